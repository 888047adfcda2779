"""mini-clip: the shipped folder loads like any hub CLIP, finds needle evidence, and its training is sound."""
import os

# Before transformers / huggingface_hub are imported: they read these once, at import time.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import numpy as np
import pytest

from harness.features.encoders import ClipEncoder
from harness.miniworld.clip import FOLDER, evaluate_mini_clip, text_objects, train_mini_clip
from harness.miniworld.tiny import clip_tokenizer
from tasks.needle import NeedleTask

needs_weights = pytest.mark.skipif(not (FOLDER / "model.safetensors").is_file(),
                                   reason="mini-clip is not trained: python -m harness.miniworld.clip train")


@needs_weights
def test_shipped_folder_loads_like_a_hub_clip():
    from transformers import CLIPModel, CLIPProcessor

    model = CLIPModel.from_pretrained(FOLDER)
    processor = CLIPProcessor.from_pretrained(FOLDER)
    assert model.config.text_config.max_position_embeddings == 77
    assert processor.image_processor.crop_size["height"] == model.config.vision_config.image_size
    texts = ["What colour is the triangle that appears in the video?", "a red star"]
    assert processor.tokenizer(texts)["input_ids"] == clip_tokenizer()(texts)["input_ids"]  # OpenAI CLIP's ids
    assert (FOLDER / "model.safetensors").stat().st_size <= 8 * 2 ** 20

    encoder = ClipEncoder(str(FOLDER))
    frames = np.random.default_rng(0).integers(0, 256, (3, 128, 128, 3), dtype=np.uint8)
    feats, text = encoder.image_features(frames), encoder.text_features(texts)
    assert feats.shape == (3, encoder.dim) and text.shape == (2, encoder.dim)
    assert np.all(np.isfinite(feats)) and np.all(np.isfinite(text))


@needs_weights
def test_top_frame_lies_in_the_evidence_of_appearance_questions(tmp_path):
    # Short, freshly generated test-split videos: never seen in training (the splits use disjoint seeds).
    task = NeedleTask(split="test", videos=8, min_duration=60, max_duration=80, root=str(tmp_path))
    result = evaluate_mini_clip(FOLDER, task)
    app = result["appearance"]
    assert app["questions"] >= 6 and app["random_frame"] < 0.2  # a real search: a random frame rarely hits
    assert app["top1_in_evidence"] >= 0.75  # 12/12 when written; 0.94 on the full 50-video test split


def test_texts_fit_the_objects_they_name():
    red_triangle = ("triangle", "red")
    from harness.miniworld.clip import OBJECTS

    fits = lambda text: {o for o, f in zip(OBJECTS, text_objects(text)) if f}  # noqa: E731
    assert fits("a red triangle") == {red_triangle}
    assert fits("What shape is the red object that appears in the video?") == {(s, "red") for s, _ in OBJECTS}
    assert red_triangle in fits("What colour is the triangle that appears in the video?")
    assert fits("Which of these objects appears in the video?") == set(OBJECTS)


def _short_run(path, seed=0, steps=3):
    return train_mini_clip(path, seed=seed, steps=steps, videos=2, batch_size=16, warmup=2, log_every=0)


def test_training_lowers_the_loss(tmp_path):
    losses = train_mini_clip(tmp_path, steps=40, videos=3, batch_size=32, warmup=5, lr=2e-3, log_every=0)["losses"]
    assert np.mean(losses[-8:]) < np.mean(losses[:8]) - 0.1


def test_training_is_deterministic_in_its_seed(tmp_path):
    from safetensors.numpy import load_file

    a, b, c = (_short_run(tmp_path / name, seed=seed) for name, seed in (("a", 0), ("b", 0), ("c", 1)))
    assert a["losses"] == b["losses"] != c["losses"]
    wa, wb = (load_file(tmp_path / name / "model.safetensors") for name in ("a", "b"))
    assert all(np.array_equal(wa[k], wb[k]) for k in wa)
