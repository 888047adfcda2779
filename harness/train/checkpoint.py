"""A training checkpoint without pickle: checkpoints/step-NNNNNN/ holds

    state.safetensors   every tensor of the state (agent weights, optimizer moments and steps, the torch RNG state
                        as uint8), under its path in the state (`agent.mlp.0.weight`, `optimizer.state.0.exp_avg`)
    state.json          everything else (step, scheduler, optimizer groups, numpy and python RNG states as lists),
                        with each tensor replaced by {"__tensor__": its key}, and the sha256 of state.safetensors

Reading one runs no code (issue 16: a crafted `state.pt` ran code when resumed with `torch.load(weights_only=False)`):
the JSON is data, safetensors holds raw bytes, and the tensors must match the digest the JSON recorded and the step
the folder is named for. state.json is written last, so a folder without it is an unfinished checkpoint. A folder
holding the old pickled `state.pt` is refused with one line, never unpickled.
"""
from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np

from harness.errors import HarnessError
from harness.util.fileio import atomic_write

CHECKPOINTS = "checkpoints"
TENSORS, STATE, OLD_STATE = "state.safetensors", "state.json", "state.pt"
FORMAT, VERSION = "harness-tspo-checkpoint", 1


def checkpoint_dir(run_dir: Path, step: int) -> Path:
    return Path(run_dir) / CHECKPOINTS / f"step-{step:06d}"


def checkpoint_dirs(run_dir: Path) -> list[Path]:
    """The complete checkpoints of a run, oldest first (an older version's `state.pt` ones included, so that
    resuming from one is refused rather than silently restarting)."""
    root = Path(run_dir) / CHECKPOINTS
    if not root.is_dir():
        return []
    return sorted(p for p in root.glob("step-*") if (p / STATE).is_file() or (p / OLD_STATE).is_file())


def write_checkpoint(run_dir: Path, step: int, state: dict, keep: int) -> Path:
    """The state after `step` steps (tensors, numpy arrays, tuples, dicts, lists, numbers, strings) as
    checkpoints/step-NNNNNN/; only the latest `keep` checkpoints stay."""
    from safetensors.torch import save

    tensors: dict = {}
    tree = _encode(state, tensors, "")
    blob = save(tensors)
    folder = checkpoint_dir(run_dir, step)
    atomic_write(folder / TENSORS, blob)
    record = {"format": FORMAT, "version": VERSION, "step": step,
              "tensors_sha256": hashlib.sha256(blob).hexdigest(), "state": tree}
    atomic_write(folder / STATE, json.dumps(record, allow_nan=True) + "\n")
    (folder / OLD_STATE).unlink(missing_ok=True)
    for old in checkpoint_dirs(run_dir)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return folder


def read_checkpoint(folder: Path) -> dict:
    """The state `write_checkpoint` wrote in `folder`; HarnessError (one line naming the folder) for an older
    version's pickle, an unreadable or edited checkpoint, or one whose tensors are not the ones it recorded."""
    folder = Path(folder)
    if not (folder / STATE).is_file():
        if (folder / OLD_STATE).is_file():
            raise HarnessError(f"checkpoint {folder / OLD_STATE} was written by an older version of the harness "
                               f"(a pickle, which is never loaded: it could run code); delete {folder.parent} to "
                               f"train again from step 0, or use another --out")
        raise HarnessError(f"checkpoint {folder}: no {STATE}")
    from safetensors.torch import load

    try:
        record = json.loads((folder / STATE).read_text(encoding="utf-8"))
        blob = (folder / TENSORS).read_bytes()
    except (OSError, ValueError) as e:
        raise HarnessError(f"cannot read checkpoint {folder}: {' '.join(str(e).split())}") from None
    if not isinstance(record, dict) or record.get("format") != FORMAT or record.get("version") != VERSION:
        raise HarnessError(f"checkpoint {folder}: {STATE} is not a {FORMAT} version {VERSION} record")
    if record.get("tensors_sha256") != hashlib.sha256(blob).hexdigest():
        raise HarnessError(f"checkpoint {folder}: {TENSORS} is not the file {STATE} recorded (edited, or copied "
                           f"from another checkpoint)")
    if record.get("step") != _folder_step(folder):
        raise HarnessError(f"checkpoint {folder}: {STATE} records step {record.get('step')!r}, not the folder's")
    try:
        tensors = load(blob)
        return _decode(record["state"], tensors)
    except Exception as e:  # safetensors' own error type, a missing key, a malformed tag
        raise HarnessError(f"cannot read checkpoint {folder}: {type(e).__name__}: "
                           f"{' '.join(str(e).split())}") from None


def _folder_step(folder: Path):
    try:
        return int(folder.name.removeprefix("step-"))
    except ValueError:
        return None


def _encode(obj, tensors: dict, path: str):
    import torch

    if isinstance(obj, torch.Tensor):
        tensors[path] = obj.detach().cpu().clone().contiguous()
        return {"__tensor__": path}
    if isinstance(obj, np.ndarray):
        return {"__ndarray__": obj.tolist(), "dtype": str(obj.dtype), "shape": list(obj.shape)}
    if isinstance(obj, np.generic):
        return obj.item()
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if isinstance(obj, (list, tuple)):
        items = [_encode(v, tensors, f"{path}.{i}".lstrip(".")) for i, v in enumerate(obj)]
        return {"__tuple__": items} if isinstance(obj, tuple) else items
    if isinstance(obj, dict):
        if all(isinstance(k, str) and not k.startswith("__") for k in obj):
            return {k: _encode(v, tensors, f"{path}.{k}".lstrip(".")) for k, v in obj.items()}
        return {"__items__": [[_encode(k, tensors, f"{path}.key{i}".lstrip(".")),
                               _encode(v, tensors, f"{path}.{k}".lstrip("."))]
                              for i, (k, v) in enumerate(obj.items())]}
    raise TypeError(f"a checkpoint cannot hold {type(obj).__name__} (at {path or 'the top'})")


def _decode(tree, tensors: dict):
    if isinstance(tree, list):
        return [_decode(v, tensors) for v in tree]
    if not isinstance(tree, dict):
        return tree
    if "__tensor__" in tree:
        return tensors[tree["__tensor__"]]
    if "__ndarray__" in tree:
        dtype = np.dtype(tree["dtype"])
        if dtype.kind not in "biuf":
            raise ValueError(f"array of dtype {dtype} (only numbers are kept)")
        return np.asarray(tree["__ndarray__"], dtype=dtype).reshape(tree["shape"])
    if "__tuple__" in tree:
        return tuple(_decode(v, tensors) for v in tree["__tuple__"])
    if "__items__" in tree:
        return {_decode(k, tensors): _decode(v, tensors) for k, v in tree["__items__"]}
    return {k: _decode(v, tensors) for k, v in tree.items()}
