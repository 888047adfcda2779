"""`score_frames` for LLaVA-Video: FRAG's frame scorer (Huang et al., arXiv 2504.17447; NVlabs/FRAG
`frame_selection.py` with its LLaVA-OneVision wrapper `models/llava_ov.py`), written from a reading of that code.

Each frame goes in ALONE, as one image, the way LLaVA-NeXT's single-image path reads it: the SigLIP tower and the
projector with no 2-D pooling (pooling is the video path's), then one newline embedding after the image when the
merge type is an "unpad" one (`vision.add_newlines(..., "one_token")`); the prompt is `<image>\\n` + the scoring
prompt in the backbone's conversation template (FRAG's wrapper: `qwen_1_5`), the assistant turn opened. The score is
the softmax over the vocabulary of the first generated token's scores at the token "A", as the official
`softmax(x['scores'][0])[:, id('A')]`.

One difference: the frame is one 384x384 tile (the original's plain image preprocessing). FRAG's wrapper leaves
LLaVA-OneVision's `anyres_max_9` tiling on for the scorer (the base image plus up to 9 crops); this backbone has no
anyres path.
"""
from __future__ import annotations

import numpy as np

from backbones.llava_video.prompt import prompt_ids, render_prompt, user_text
from backbones.llava_video.vision import video_features, visual_token_count
from harness.errors import HarnessError
from harness.util.frames import check_frames

SCORE_TOKEN = "A"  # FRAG's OPTIONS[0]: "A. yes"


def image_ids(backbone, prompt: str) -> list[int]:
    """Token ids of one frame as an image with `prompt`, its visual span as the backbone's placeholders."""
    text = render_prompt(user_text(prompt), backbone.conv_template)
    n_visual = visual_token_count(1, backbone.side, 1, backbone.pool_mode, "one_token", backbone.merge_type)
    return prompt_ids(backbone.tokenizer, text, backbone.video_token_id, n_visual)


def score_frames(backbone, frames: np.ndarray, prompt: str, batch_size: int = 8) -> np.ndarray:
    """(n,) probabilities of "A" for each frame alone with `prompt` (see the module docstring)."""
    import torch

    frames = check_frames(frames, allow_empty=True)
    out = np.zeros(len(frames), np.float64)
    if not len(frames):
        return out
    select = backbone.tokenizer.convert_tokens_to_ids(SCORE_TOKEN)
    if select is None or select == backbone.tokenizer.unk_token_id:
        raise HarnessError(f"the tokenizer has no token {SCORE_TOKEN!r} to score frames with")
    ids = image_ids(backbone, prompt)
    step = max(1, int(batch_size))
    for start in range(0, len(frames), step):
        pixels = backbone._pixel_values(frames[start:start + step])
        with torch.inference_mode():
            feats = [video_features(backbone.model, pixels[i:i + 1], backbone.pool_mode, 1, "one_token",
                                    backbone.merge_type) for i in range(len(pixels))]
            batch = {"input_ids": [ids] * len(feats), "owner": list(range(len(feats)))}
            embeds, mask = backbone.batch_embeddings(batch, None, feats)
            generated = backbone.model.generate(
                inputs_embeds=embeds, attention_mask=mask, max_new_tokens=1, do_sample=False, num_beams=1,
                temperature=None, top_p=None, top_k=None, eos_token_id=backbone.stop_ids,
                pad_token_id=backbone.pad_id, output_scores=True, return_dict_in_generate=True)
            probs = torch.softmax(generated.scores[0].float(), dim=-1)[:, int(select)]
        out[start:start + len(feats)] = probs.double().cpu().numpy()
    return out
