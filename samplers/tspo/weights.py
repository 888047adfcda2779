"""Reading TSPO selector weights: a TSPO checkpoint folder (a CLIPModel whose weights also hold `selector.*`), a
folder holding `selector.safetensors` (a copied shipped agent, a training run), or a single state-dict file; and the
digest that identifies them in a run.

Weights are checked as they are read: an unreadable file is a HarnessError naming it (bad input); tensors holding
NaN or inf are a FatalError naming the file (they would give NaN logits for every question)."""
from __future__ import annotations

import hashlib
import json
import pickle
from pathlib import Path
from typing import Mapping

import torch

from harness.errors import FatalError, HarnessError
from harness.util.checkpoints import shard_files
from samplers.tspo.agent import TemporalAgent
from samplers.tspo.settings import CHECKPOINT_PREFIXES, COMPUTE_DTYPES

SELECTOR_FILE = "selector.safetensors"  # the bare selector: shipped agents, `harness train tspo` runs

def read_selector_state(path) -> dict[str, torch.Tensor]:
    """The selector tensors (prefix stripped, dtype as stored) of a TSPO checkpoint folder (a CLIPModel whose
    safetensors / pytorch_model*.bin also hold `selector.*`), of a folder holding `selector.safetensors`, or of a
    single state-dict file (.safetensors, .pt, .pth, .bin) that is either a bare selector state dict or holds
    prefixed selector keys among others. FatalError naming the file for weights holding NaN or inf."""
    path = Path(path).expanduser()
    if path.is_dir():
        if (path / SELECTOR_FILE).is_file():
            path = path / SELECTOR_FILE
        else:
            return _read_folder(path)
    if path.is_file():
        return _finite(_strip_prefix(_read_tensor_file(path), bare_ok=True), path)
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
        state.update(_finite(_strip_prefix(_read_tensor_file(file, only_prefixed=True), bare_ok=False), file))
    if not state:
        raise HarnessError(f"TSPO agent folder {str(folder)!r}: no selector tensors (keys starting with "
                           f"{' or '.join(CHECKPOINT_PREFIXES)}) in {', '.join(f.name for f in files)}; "
                           f"is it a TSPO checkpoint?")
    return state


def _finite(state: dict, file: Path) -> dict:
    bad = [k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        raise FatalError(f"agent weights {str(file)!r} hold NaN/inf values ({', '.join(sorted(bad)[:3])}"
                         f"{', ...' if len(bad) > 3 else ''}); the file is corrupted or its training diverged")
    return state


def recorded_encoder(folder) -> str | None:
    """The encoder an agent folder's training record names: training.json of a shipped agent (its `config.train`),
    or config.json of a `harness train tspo` run (its `train`); None where there is none."""
    folder = Path(folder).expanduser()
    for name, keys in (("training.json", ("config", "train", "encoder")), ("config.json", ("train", "encoder"))):
        try:
            value = json.loads((folder / name).read_text(encoding="utf-8"))
            for key in keys:
                value = value[key]
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if isinstance(value, str) and value:
            return value
    return None


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
        raise HarnessError(f"cannot read TSPO agent file {str(file)!r}: {_reason(e)}") from None
    except Exception as e:  # safetensors' own error type (a truncated or random-bytes file)
        if type(e).__name__ != "SafetensorError":
            raise
        raise HarnessError(f"cannot read TSPO agent file {str(file)!r}: not a safetensors file "
                           f"({_reason(e)})") from None
    raise HarnessError(f"TSPO agent file {str(file)!r}: unknown format (expected .safetensors, .pt, .pth or .bin)")


def _reason(e: Exception) -> str:
    """The error in one short line; torch's weights-only refusal is cut to its cause (its advice to load with
    weights_only=False, which could run code, is not passed on)."""
    text = " ".join(str(e).split())
    if "WeightsUnpickler error:" in text:
        cause = text.split("WeightsUnpickler error:", 1)[1].split(" Check the documentation")[0].strip()
        return f"not a plain tensor file ({cause})"
    return text


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
