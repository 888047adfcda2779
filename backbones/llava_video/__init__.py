"""LLaVA-Video-7B-Qwen2 through transformers' LLaVA-OneVision classes (registered as `llava-video`), and the
converter from the original checkpoint layout."""
from backbones.llava_video import adapter  # noqa: F401  (registration side effect)
