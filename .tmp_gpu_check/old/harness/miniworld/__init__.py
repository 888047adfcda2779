"""The offline mini world: small real models, trained here on the needle task, shipped as Hugging Face folders.

`SHIPPED` names the folders under `weights/`; `resolve_model` lets every `model=` option take such a name as well
as a hub id or a local folder. `SHIPPED_AGENTS` names TSPO agents trained here (`harness train tspo` over mini-clip
features, answered by mini-qwen2.5-vl; the folder's training.json has the command and its log): `tspo:agent=NAME`.
"""
from __future__ import annotations

from pathlib import Path

WEIGHTS = Path(__file__).resolve().parent / "weights"
SHIPPED = {name: WEIGHTS / name for name in ("mini-qwen2.5-vl", "mini-clip")}
SHIPPED_AGENTS = {"mini-tspo": (WEIGHTS / "mini-tspo" / "selector.safetensors", "mini-clip")}  # file, its encoder


def resolve_model(name_or_path) -> str:
    """A shipped model's folder for its name; anything else (hub id, local folder) unchanged."""
    name = str(name_or_path)
    return str(SHIPPED[name]) if name in SHIPPED else name
