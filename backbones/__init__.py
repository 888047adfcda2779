"""Backbones (video-LLMs and offline readers). Importing this package registers the built-in ones."""
from backbones import colour_probe, hf, llava_video, none, qwen2_5_vl  # noqa: F401  (registration side effect)
