"""Reading TSPO selector weights: a TSPO checkpoint folder (a CLIPModel whose weights also hold `selector.*`),
or a single state-dict file; and the digest that identifies them in a run."""
from __future__ import annotations

import hashlib
import json
import pickle
from pathlib import Path
from typing import Mapping

import torch

from harness.errors import HarnessError
from harness.util.checkpoints import shard_files
from samplers.tspo.agent import TemporalAgent
from samplers.tspo.settings import CHECKPOINT_PREFIXES, COMPUTE_DTYPES



def read_selector_state(path) -> dict[str, torch.Tensor]:
    """The selector tensors (prefix stripped, dtype as stored) of a TSPO checkpoint folder (a CLIPModel whose
    safetensors / pytorch_model*.bin also hold `selector.*`), or of a single state-dict file (.safetensors, .pt,
    .pth, .bin) that is either a bare selector state dict or holds prefixed selector keys among others."""
    path = Path(path).expanduser()
    if path.is_dir():
        return _read_folder(path)
    if path.is_file():
        return _strip_prefix(_read_tensor_file(path), bare_ok=True)
    raise HarnessError(f"TSPO agent {str(path)!r}: no such file or folder")


def load_agent(path, device="cpu", dtype="float32") -> TemporalAgent:
    """A TemporalAgent in eval mode from a checkpoint folder or a state-dict file (see `read_selector_state`)."""
    source = str(Path(path).expanduser())
    agent = TemporalAgent.from_state_dict(read_selector_state(path), source=source)
    return agent.to(device=torch.device(device), dtype=torch_dtype(dtype)).eval()


def state_digest(state: Mapping[str, torch.Tensor]) -> str:
    """sha256 of the tensors (names, dtypes, shapes, bytes): the same weights give the same digest wherever they lie."""
    h = hashlib.sha256()
    for key in sorted(state):
        tensor = state[key].detach().cpu().contiguous()
        h.update(json.dumps([key, str(tensor.dtype), list(tensor.shape)]).encode())
        h.update(tensor.flatten().view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def folder_has_clip(path) -> bool:
    """True for a folder holding a Hugging Face CLIP config (a TSPO-0.4B checkpoint is one)."""
    config = Path(path).expanduser() / "config.json"
    if not config.is_file():
        return False
    try:
        return json.loads(config.read_text()).get("model_type") == "clip"
    except (OSError, ValueError, AttributeError):
        return False


def _read_folder(folder: Path) -> dict[str, torch.Tensor]:
    files = _weight_files(folder)
    if not files:
        raise HarnessError(f"TSPO agent folder {str(folder)!r} has no *.safetensors or pytorch_model*.bin files")
    state: dict[str, torch.Tensor] = {}
    for file in files:
        state.update(_strip_prefix(_read_tensor_file(file, only_prefixed=True), bare_ok=False))
    if not state:
        raise HarnessError(f"TSPO agent folder {str(folder)!r}: no selector tensors (keys starting with "
                           f"{' or '.join(CHECKPOINT_PREFIXES)}) in {', '.join(f.name for f in files)}; "
                           f"is it a TSPO checkpoint?")
    return state


def _weight_files(folder: Path) -> list[Path]:
    # Follow the shard index where there is one (the shards holding the selector), not a guessed last-shard name.
    named = shard_files(folder, wanted=lambda key: key.startswith(CHECKPOINT_PREFIXES))
    if named is not None:
        return named
    safetensors = sorted(folder.glob("*.safetensors"))
    return safetensors or sorted(folder.glob("pytorch_model*.bin"))


def _read_tensor_file(file: Path, only_prefixed: bool = False) -> dict[str, torch.Tensor]:
    """All tensors of a file (or only the prefixed ones, so a 1.7 GB CLIP shard is not read whole)."""
    try:
        if file.suffix == ".safetensors":
            from safetensors import safe_open

            with safe_open(str(file), framework="pt", device="cpu") as f:
                keys = [k for k in f.keys() if not only_prefixed or k.startswith(CHECKPOINT_PREFIXES)]
                return {k: f.get_tensor(k) for k in keys}
        if file.suffix in (".pt", ".pth", ".bin"):
            obj = torch.load(file, map_location="cpu", weights_only=True)
            if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
                raise HarnessError(f"TSPO agent file {str(file)!r} does not hold a state dict (name -> tensor)")
            return {str(k): v for k, v in obj.items() if not only_prefixed or str(k).startswith(CHECKPOINT_PREFIXES)}
    except HarnessError:
        raise
    except (OSError, RuntimeError, ValueError, pickle.UnpicklingError, EOFError) as e:
        raise HarnessError(f"cannot read TSPO agent file {str(file)!r}: {' '.join(str(e).split())}") from None
    raise HarnessError(f"TSPO agent file {str(file)!r}: unknown format (expected .safetensors, .pt, .pth or .bin)")


def _strip_prefix(tensors: dict, bare_ok: bool) -> dict[str, torch.Tensor]:
    """The selector tensors without their prefix; a file without prefixed keys is a bare state dict if allowed."""
    for prefix in CHECKPOINT_PREFIXES:
        found = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
        if found:
            return found
    if bare_ok:
        return dict(tensors)
    return {}


def torch_dtype(name) -> torch.dtype:
    if isinstance(name, torch.dtype):
        return name
    if name not in COMPUTE_DTYPES:
        raise HarnessError(f"unknown TSPO dtype {name!r} (known: {', '.join(COMPUTE_DTYPES)})")
    return getattr(torch, name)
