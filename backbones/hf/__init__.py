"""Any transformers image-text-to-text video-LLM as a backbone (see `adapter`): qwen2-vl, qwen3-vl,
llava-onevision, llava-next-video, internvl, smolvlm2."""
from backbones.hf import adapter  # noqa: F401  (registration side effect)
