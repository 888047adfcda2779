"""Qwen2.5-VL through transformers: the adapter (registered as `qwen2.5-vl` and `mini-qwen2.5-vl`), its chat format,
3-D rope positions, fast paths, prefill probe and random-weight architectures (see `adapter`'s docstring)."""
from backbones.qwen2_5_vl import adapter  # noqa: F401  (registration side effect)
