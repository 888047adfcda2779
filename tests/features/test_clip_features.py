"""CLIP features and the feature cache, on a tiny random CLIP built offline (no downloads)."""
import os

# Before transformers / huggingface_hub are imported: they read these once, at import time.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import json
import threading
import time

import numpy as np
import pytest

from harness.errors import HarnessError, VideoError
from harness.features.encoders import ClipEncoder
from harness.features.store import FeatureCache, cosine_scores, video_identity
from harness.miniworld.tiny import build_tiny_clip

# open_clip also runs ftfy and html.unescape before tokenizing; transformers' CLIP tokenizer (like the hub CLIP
# tokenizers) does not, so HTML entities ("&amp;"), mojibake and ligatures are left out of this comparison.
SENTENCES = [
    "A man rides a bike down the hill.",
    "What's the dog's name?? It'll rain, won't it... (maybe!)",
    "Héllo, wörld! Café naïve — déjà vu; 東京タワー and 😀🎬",
    "  Extra   spaces\tand\nnewlines, UPPER case, numbers 1234 and 3.14%  ",
    "email: someone@example.com #hashtag $100 <tag> [x] {y} a/b\\c",
    "Привет мир, مرحبا بالعالم, 안녕하세요",
]


@pytest.fixture(scope="session")
def encoder(tiny_clip):
    return ClipEncoder(str(tiny_clip))


@pytest.fixture(scope="session")
def frames():
    return np.random.default_rng(0).integers(0, 256, size=(7, 48, 80, 3), dtype=np.uint8)


# --- tiny CLIP -------------------------------------------------------------------------------------------------------

def test_tiny_clip_reloads_offline(tiny_clip):
    from transformers import AutoProcessor, CLIPModel, CLIPProcessor

    model = CLIPModel.from_pretrained(tiny_clip)
    assert model.config.projection_dim == 32 and model.config.vision_config.image_size == 64
    assert model.config.text_config.max_position_embeddings == 77
    for processor in (CLIPProcessor.from_pretrained(tiny_clip), AutoProcessor.from_pretrained(tiny_clip)):
        assert processor.image_processor.crop_size == {"height": 64, "width": 64}
        assert len(processor.tokenizer) == 49408 and processor.tokenizer.model_max_length == 77


def test_tiny_clip_is_deterministic_in_its_seed(tiny_clip, tmp_path):
    from safetensors.numpy import load_file

    def weights(folder):
        return load_file(folder / "model.safetensors")

    same, other = weights(build_tiny_clip(tmp_path / "same", seed=0)), weights(build_tiny_clip(tmp_path / "o", seed=1))
    reference = weights(tiny_clip)
    assert all(np.array_equal(reference[k], same[k]) for k in reference)
    assert not all(np.array_equal(reference[k], other[k]) for k in reference)


def test_tokenizer_matches_open_clip(tiny_clip):
    import open_clip
    from open_clip.tokenizer import SimpleTokenizer
    from transformers import CLIPTokenizer

    ours, theirs = CLIPTokenizer.from_pretrained(tiny_clip), SimpleTokenizer()
    for text in SENTENCES:
        expected = [theirs.sot_token_id, *theirs.encode(text), theirs.eot_token_id]
        assert ours(text)["input_ids"] == expected, text

    # The model-level tokenizer (77 tokens, truncation keeps the end token last); open_clip pads with 0, so compare
    # only the real tokens.
    texts = SENTENCES + ["word " * 200]
    reference = open_clip.get_tokenizer("ViT-B-32")(texts).numpy()
    batch = ours(texts, padding="max_length", truncation=True, max_length=77, return_tensors="np")
    assert batch["input_ids"].shape == reference.shape == (len(texts), 77)
    mask = batch["attention_mask"].astype(bool)
    assert np.array_equal(np.where(mask, batch["input_ids"], 0), reference)
    assert batch["input_ids"][-1, -1] == theirs.eot_token_id


# --- ClipEncoder -----------------------------------------------------------------------------------------------------

def test_image_features_are_the_models_raw_projections(encoder, tiny_clip, frames):
    import torch
    from PIL import Image
    from transformers import CLIPModel, CLIPProcessor

    feats = encoder.image_features(frames)
    assert feats.shape == (7, 32) and feats.dtype == np.float32
    # Independently: the stock processor on PIL images, then get_image_features; no normalisation (TSPO needs scale).
    model, processor = CLIPModel.from_pretrained(tiny_clip).eval(), CLIPProcessor.from_pretrained(tiny_clip)
    with torch.no_grad():
        pixels = processor(images=[Image.fromarray(f) for f in frames], return_tensors="pt")["pixel_values"]
        out = model.get_image_features(pixel_values=pixels)
    np.testing.assert_allclose(feats, getattr(out, "pooler_output", out).numpy(), atol=1e-4)
    with torch.no_grad():  # bit for bit what the processor makes of the frames as one permuted tensor view
        view = encoder.processor.image_processor(images=torch.from_numpy(frames).permute(0, 3, 1, 2),
                                                 return_tensors="pt")["pixel_values"]
        out = encoder.model.get_image_features(pixel_values=view)
    np.testing.assert_array_equal(feats, getattr(out, "pooler_output", out).float().numpy())
    assert not np.allclose(np.linalg.norm(feats, axis=1), 1.0, atol=1e-3)
    np.testing.assert_array_equal(feats, encoder.image_features(frames))
    assert encoder.image_features(frames[:0]).shape == (0, 32)


def test_image_features_batch_size_invariant(encoder, frames):
    np.testing.assert_allclose(encoder.image_features(frames, batch_size=1), encoder.image_features(frames, 64),
                               atol=1e-5)
    np.testing.assert_allclose(encoder.image_features(frames, batch_size=3), encoder.image_features(frames, 64),
                               atol=1e-5)


def test_same_folder_same_features(encoder, tiny_clip, frames):
    again = ClipEncoder(tiny_clip)
    assert again.encoder_id == encoder.encoder_id and str(tiny_clip.resolve()) in encoder.encoder_id
    assert again.preprocess_id == encoder.preprocess_id
    np.testing.assert_allclose(again.image_features(frames), encoder.image_features(frames), atol=1e-6)


def test_text_features(encoder):
    feats = encoder.text_features(SENTENCES)
    assert feats.shape == (len(SENTENCES), 32) and feats.dtype == np.float32
    assert np.all(np.isfinite(feats)) and np.all(np.linalg.norm(feats, axis=1) > 0)
    # Padding to the longest text in the batch must not change a text's features.
    np.testing.assert_allclose(encoder.text_features(SENTENCES[:1]), feats[:1], atol=1e-5)
    assert encoder.text_features([]).shape == (0, 32)


def test_long_text_is_truncated_to_77_tokens(encoder):
    long = "a very long question about the video " * 40
    feats = encoder.text_features([long, long + " with a different ending that lies past the limit"])
    np.testing.assert_allclose(feats[0], feats[1], atol=1e-6)


def test_half_precision_model_gives_float32_features(tiny_clip, encoder, frames):
    half = ClipEncoder(tiny_clip, dtype="bfloat16")
    feats = half.image_features(frames)
    assert feats.dtype == np.float32
    full = encoder.image_features(frames)
    cosine = np.sum(feats * full, axis=1) / (np.linalg.norm(feats, axis=1) * np.linalg.norm(full, axis=1))
    assert np.all(cosine > 0.95)  # close to the float32 model


def test_cosine_scores_match_numpy(encoder, frames):
    images, text = encoder.image_features(frames), encoder.text_features(["a red car"])[0]
    expected = np.array([np.dot(v, text) / (np.linalg.norm(v) * np.linalg.norm(text)) for v in images])
    np.testing.assert_allclose(cosine_scores(images, text), expected, atol=1e-6)
    # Not only for unit vectors, and (1, d) text input works too.
    raw = np.random.default_rng(1).normal(size=(5, 8))
    query = np.random.default_rng(2).normal(size=8)
    expected = [np.dot(v, query) / (np.linalg.norm(v) * np.linalg.norm(query)) for v in raw]
    np.testing.assert_allclose(cosine_scores(raw * 3, query[None]), expected, atol=1e-12)


def test_missing_hub_model_fails_fast_offline(monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # in case it was imported before
    start = time.monotonic()
    with pytest.raises(HarnessError) as info:
        ClipEncoder("longvideo-harness-test/no-such-clip-model")
    message = str(info.value)
    assert message.startswith("cannot load CLIP model 'longvideo-harness-test/no-such-clip-model': ")
    assert "\n" not in message
    assert time.monotonic() - start < 10


def test_bad_local_folder_and_options(tmp_path, tiny_clip):
    with pytest.raises(HarnessError, match="no such folder"):
        ClipEncoder(str(tmp_path / "missing" / "model"))
    with pytest.raises(HarnessError, match="cannot load CLIP model"):
        ClipEncoder(tmp_path)  # exists, but holds no model
    with pytest.raises(HarnessError, match="unknown dtype"):
        ClipEncoder(tiny_clip, dtype="float64")


# --- FeatureCache ----------------------------------------------------------------------------------------------------

KEY_PARTS = dict(video="/data/v.mp4", video_size=123, video_mtime_ns=456, grid_rule="fps1-max256",
                 encoder_id="tiny@abc", preprocess="p1", dtype="float32", version="1")


def test_cache_round_trip(tmp_path):
    cache = FeatureCache(tmp_path / "cache")
    key = cache.key(**KEY_PARTS)
    assert cache.load(key) is None
    array = np.random.default_rng(0).normal(size=(10, 32)).astype(np.float32)
    cache.save(key, array, {"fps": 1.0, "n": 10})
    loaded = cache.load(key)
    assert loaded.dtype == np.float32
    np.testing.assert_array_equal(loaded, array)
    manifest = json.loads(cache.manifest_path(key).read_text())
    assert manifest["fps"] == 1.0 and manifest["key"] == key and manifest["shape"] == [10, 32]


def test_cache_key_changes_with_every_part():
    cache = FeatureCache("unused")
    base = cache.key(**KEY_PARTS)
    assert len(base) == 64 and int(base, 16) >= 0
    assert cache.key(**dict(reversed(list(KEY_PARTS.items())))) == base  # order of arguments does not matter
    for name, value in KEY_PARTS.items():
        changed = dict(KEY_PARTS, **{name: value + 1 if isinstance(value, int) else value + "x"})
        assert cache.key(**changed) != base, name


def test_leftover_temp_file_is_not_an_entry(tmp_path):
    cache = FeatureCache(tmp_path)
    key = cache.key(**KEY_PARTS)
    path = cache.path(key)
    path.parent.mkdir(parents=True)
    (path.parent / f".{path.name}.k1ll3d.tmp").write_bytes(b"half a file")  # what a killed writer leaves
    assert cache.load(key) is None
    cache.save(key, np.ones((2, 3), np.float32), {})
    np.testing.assert_array_equal(cache.load(key), np.ones((2, 3)))


def test_failed_write_leaves_nothing(tmp_path, monkeypatch):
    cache = FeatureCache(tmp_path)
    key = cache.key(**KEY_PARTS)

    def crash(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError):
        cache.save(key, np.ones(3, np.float32), {})
    monkeypatch.undo()
    assert cache.load(key) is None
    assert not any(p.name.endswith(".tmp") for p in tmp_path.rglob("*"))


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty"])
def test_corrupt_entry_is_treated_as_missing_and_overwritten(tmp_path, damage):
    cache = FeatureCache(tmp_path)
    key = cache.key(**KEY_PARTS)
    cache.save(key, np.zeros((4, 4), np.float32), {})
    whole = cache.path(key).read_bytes()
    cache.path(key).write_bytes({"truncate": whole[:len(whole) // 2], "empty": b"",
                                 "garbage": b"\x10\x00\x00\x00\x00\x00\x00\x00{not safetensors"}[damage])
    with pytest.warns(UserWarning, match=cache.path(key).name):
        assert cache.load(key) is None
    cache.save(key, np.ones((4, 4), np.float32), {})
    np.testing.assert_array_equal(cache.load(key), np.ones((4, 4)))


def test_concurrent_writers_leave_one_whole_entry(tmp_path):
    cache = FeatureCache(tmp_path)
    key = cache.key(**KEY_PARTS)
    arrays = [np.full((200, 64), i, np.float32) for i in range(8)]
    threads = [threading.Thread(target=cache.save, args=(key, a, {"writer": i})) for i, a in enumerate(arrays)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    loaded = cache.load(key)
    assert any(np.array_equal(loaded, a) for a in arrays)
    assert not any(p.name.endswith(".tmp") for p in tmp_path.rglob("*"))


def test_video_identity(tmp_path, monkeypatch):
    video = tmp_path / "clip.mp4"
    video.write_bytes(b"0123456789")
    monkeypatch.chdir(tmp_path)
    ident = video_identity("clip.mp4")
    assert ident == dict(video=str(video.resolve()), video_size=10, video_mtime_ns=video.stat().st_mtime_ns)
    with pytest.raises(VideoError):
        video_identity(tmp_path / "missing.mp4")


def test_a_sampler_reading_only_image_features_encodes_no_text(tmp_path, tiny_clip):
    """maxinfo declares only image_features: its questions' texts are never encoded (before, each was, for nothing),
    while a sampler that reads the text still gets it."""
    from harness.config import RunConfig
    from harness.run.runner import Run

    def run(sampler, out):
        cfg = RunConfig(task="smoke", task_args={"videos": 2, "duration": 12.0}, backbone="none", frames=4,
                        samplers=[sampler], out=str(tmp_path / out), cache_dir=str(tmp_path / f"cache-{out}"))
        r = Run(cfg, progress=False)
        r.execute()
        return r.inputs.stats

    image_only = run(f"maxinfo:encoder={tiny_clip}", "maxinfo")
    assert image_only["image_computed"] == 2 and image_only.get("text_computed", 0) == 0
    from harness.registry import TASKS

    texts = {s.question for s in TASKS.create("smoke", videos=2, duration=12.0).samples()}
    assert run(f"topk:encoder={tiny_clip}", "topk")["text_computed"] == len(texts)  # each distinct question once
