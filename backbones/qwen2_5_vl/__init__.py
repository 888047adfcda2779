"""Qwen2.5-VL through transformers: the adapter (registered as `qwen2.5-vl` and `mini-qwen2.5-vl`) and its fast
paths."""
from backbones.qwen2_5_vl import adapter  # noqa: F401  (registration side effect)
