"""LLaVA-Video-7B-Qwen2 through transformers' LLaVA-OneVision classes (registered as `llava-video`; importing the
package registers it): `adapter` (the backbone), `vision` (preprocessing, pooling, newlines, visual token counts),
`prompt` (time instruction, templates, token ids), `build` (random-weight presets, byte tokenizer, folder checks),
`convert` (the original checkpoint layout to transformers'), `flops` and `probe` (what `harness bench` times),
`scoring` (`score_frames`: FRAG's per-frame yes/no score)."""
from backbones.llava_video.adapter import LlavaVideo

__all__ = ["LlavaVideo"]
