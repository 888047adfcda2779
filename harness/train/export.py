"""A trained TSPO agent written out: in the TSPO-0.4B layout (CLIP weights plus the selector, one folder) or as the
bare selector (one safetensors file)."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

from harness.errors import HarnessError
from harness.train.rundir import SELECTOR_FILE
from harness.util.fileio import atomic_write


def export_agent(selector_state: dict, encoder: str, folder) -> Path:
    """Write the agent in the TSPO-0.4B layout: the encoder's CLIPModel weights plus `selector.*` in
    model.safetensors, its config (architectures ["TSPOModel"]) and processor files; loadable by
    `samplers.tspo.weights.load_agent(folder)`, `CLIPModel.from_pretrained(folder)` and as `tspo:agent=FOLDER`.
    Weights keep the encoder's dtype (the official file is bf16). Written to a temporary folder, then renamed."""
    from safetensors.torch import save_file
    from transformers import CLIPModel, CLIPProcessor

    from harness.features.encoders import model_type
    from harness.shipped import resolve_model

    source = resolve_model(encoder)
    if str(encoder).startswith("open_clip:") or model_type(source) != "clip":
        raise HarnessError(f"the TSPO-0.4B layout holds a transformers CLIPModel; encoder {encoder!r} is not one "
                           f"(use {SELECTOR_FILE} with tspo:agent=FILE,encoder={encoder})")
    folder = Path(folder)
    model = CLIPModel.from_pretrained(source)
    processor = CLIPProcessor.from_pretrained(source)
    state = {k: v.detach().cpu().clone().contiguous() for k, v in model.state_dict().items()}
    state.update({f"selector.{k}": v.detach().cpu().clone().contiguous() for k, v in selector_state.items()})
    tmp = folder.parent / f".{folder.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    config = model.config
    config.architectures = ["TSPOModel"]
    config.save_pretrained(tmp)
    processor.save_pretrained(tmp)
    save_file(state, str(tmp / "model.safetensors"), metadata={"format": "pt"})
    old = folder.parent / f".{folder.name}.old-{os.getpid()}"
    if folder.exists():
        folder.rename(old)
    tmp.rename(folder)
    shutil.rmtree(old, ignore_errors=True)
    return folder


def save_selector(selector_state: dict, path) -> Path:
    from safetensors.torch import save

    atomic_write(path, save({k: v.detach().cpu().clone().contiguous() for k, v in selector_state.items()}))
    return Path(path)
