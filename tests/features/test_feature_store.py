"""The feature store and the commands on it (issue 5): encoders (CLIP, open_clip, BLIP ITM) loaded by spec, features
and ITM scores decoded once per video and cached, `harness features`, `harness select` and its replay.

Everything runs offline on tiny random models (harness.miniworld.tiny) and short generated needle videos (4 questions
per video). Decodes are counted by wrapping `VideoReader.get_frames`, independently of the store's own counters.
"""
import os

# Before transformers / huggingface_hub are imported: they read these once, at import time.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import json
import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from backbones.colour_probe import ColourProbe
from harness.cli.app import main
from harness.config import RunConfig
from harness.features.encoders import BlipItmScorer, ClipEncoder, OpenClipEncoder, lavis_caption, load_encoder
from harness.errors import HarnessError
from harness.features.store import FeatureStore
from harness.video.grid import make_grid
from harness.registry import BACKBONES, SAMPLERS, TASKS
from harness.run.runner import Run
from harness.store.selections import load_selections
from harness.miniworld.tiny import build_tiny_blip, build_tiny_open_clip
from harness.video.reader import VideoReader, open_video

NEEDLE = {"videos": 2, "min_duration": 40.0, "max_duration": 50.0}  # 4 questions per video, 40-50 s at 4 fps
K = 4
RECORD_KEYS = {"sample_id", "video", "grid", "positions", "frame_indices", "timestamps", "sampler", "config_hash"}


@BACKBONES.register("frame-count-probe", description="test backbone: colour-probe under another name")
class FrameCountProbe(ColourProbe):
    """A second backbone: the run identity differs, the frames it needs are the same kind."""

    name = "frame-count-probe"


# -- fixtures ---------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def needle_root(tmp_path_factory):
    """The needle videos, generated once per session; tests that damage or touch videos make their own."""
    root = tmp_path_factory.mktemp("needle-videos")
    TASKS.create("needle", root=str(root), **NEEDLE).samples()
    return root


@pytest.fixture(scope="session")
def needle_samples(needle_root):
    return TASKS.create("needle", root=str(needle_root), **NEEDLE).samples()


@pytest.fixture()
def decodes(monkeypatch):
    """Frames decoded per video (resolved path), counted at the reader: every decode goes through get_frames (the
    runner's SharedReader, which serves kept frames and asks its inner reader for the rest, is not a decoder)."""
    from harness.video.framecache import SharedReader

    counts = Counter()
    original = VideoReader.get_frames

    def counting(self, indices):
        frames = original(self, indices)
        if not isinstance(self, SharedReader):
            counts[str(Path(self.meta.path).resolve())] += len(frames)
        return frames

    monkeypatch.setattr(VideoReader, "get_frames", counting)
    return counts


def grid_of(video, rule="1fps"):
    with open_video(video) as reader:
        return make_grid(reader.meta.frame_count, reader.meta.fps, rule)


def by_video(samples) -> dict:
    out = {}
    for s in samples:
        out.setdefault(str(Path(s.video).resolve()), []).append(s)
    return out


def predictions(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "predictions.jsonl").read_text().splitlines()]


def backbone_frames(run_dirs) -> Counter:
    """Frames the backbone decodes per video where the feature pass kept none: the distinct frames of all the
    video's selections, decoded in one pass (harness.video.framecache)."""
    frames: dict = {}
    for d in run_dirs:
        for row in predictions(d):
            frames.setdefault(str(Path(row["video"]).resolve()), set()).update(row["selection"]["frame_indices"])
    return Counter({v: len(f) for v, f in frames.items()})


def needle_cfg(root, tmp_path, samplers, backbone="colour-probe", **kw) -> RunConfig:
    # workers=0: every decode in this process, where the tests count them
    return RunConfig(task="needle", task_args={**NEEDLE, "root": str(root)}, backbone=backbone, samplers=samplers,
                     frames=K, cache_dir=str(tmp_path / "cache"), out=str(tmp_path / "runs"), **{"workers": 0, **kw})


def manifests(cache_dir) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(Path(cache_dir).rglob("*.json"))]


def one_line(message: str) -> bool:
    return "\n" not in message.strip() and "Traceback" not in message


# -- load_encoder -----------------------------------------------------------------------------------------------------
def test_load_encoder_dispatches_on_the_model(tiny_clip, tiny_blip, tiny_open_clip):
    clip, blip, oc = load_encoder(str(tiny_clip)), load_encoder(str(tiny_blip)), load_encoder(tiny_open_clip)
    assert type(clip) is ClipEncoder and clip.kind == "features" and clip.dim == 32
    assert type(blip) is BlipItmScorer and blip.kind == "itm"
    assert type(oc) is OpenClipEncoder and oc.kind == "features" and oc.dim == 16
    assert str(Path(tiny_clip).resolve()) in clip.encoder_id and str(Path(tiny_blip).resolve()) in blip.encoder_id
    assert oc.encoder_id.startswith("open_clip:tiny-open-clip-test:")


def test_load_encoder_errors_are_one_line(tmp_path):
    from transformers import BertConfig

    with pytest.raises(HarnessError, match="names no weights") as info:
        load_encoder("open_clip:ViT-B-32")
    assert one_line(str(info.value)) and "open_clip:ViT-B-32:random" in str(info.value)
    with pytest.raises(HarnessError, match="no such folder") as info:
        load_encoder(str(tmp_path / "no" / "such" / "model"))
    assert one_line(str(info.value))
    (tmp_path / "empty").mkdir()
    with pytest.raises(HarnessError, match="cannot load encoder") as info:
        load_encoder(str(tmp_path / "empty"))  # a folder without config.json
    assert one_line(str(info.value))
    BertConfig(hidden_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=8,
               vocab_size=10).save_pretrained(tmp_path / "bert")
    with pytest.raises(HarnessError, match="is a 'bert' model; expected CLIP") as info:
        load_encoder(str(tmp_path / "bert"))
    assert one_line(str(info.value))
    with pytest.raises(HarnessError) as info:  # a hub id that is not in the local cache, offline
        load_encoder("longvideo-harness-test/no-such-encoder")
    assert one_line(str(info.value)) and "no-such-encoder" in str(info.value)


# -- BLIP image-text matching -----------------------------------------------------------------------------------------
def test_lavis_caption_golden_strings():
    assert lavis_caption("What colour is the Square?") == "what colour is the square?"
    assert lavis_caption('He said: "Stop!" (twice) *now* #1 ~ok; done.') == "he said stop twice now 1 ok done"
    assert lavis_caption("What's the dog's name, Bob?") == "what's the dog's name, bob?"
    assert lavis_caption("  A\tB\n\nC  ") == "a\tb c"  # only runs of 2+ whitespace collapse, as in LAVIS
    assert lavis_caption(" ".join(f"w{i}" for i in range(60))) == " ".join(f"w{i}" for i in range(50))
    assert lavis_caption("one two three", max_words=2) == "one two"


QUESTIONS = [  # (question, its LAVIS caption written out by hand)
    ("What colour is the Square that appears in the video?", "what colour is the square that appears in the video?"),
    ('How many times does the "red circle" appear (in total)?', "how many times does the red circle appear in total ?"),
    ("Which of these objects appears first: the blue star, the green cross, the yellow triangle, the purple square, "
     "the orange circle, the red star or the cyan cross?",
     "which of these objects appears first the blue star, the green cross, the yellow triangle, the purple square, "
     "the orange circle, the red star or the cyan cross?"),
]


def reference_itm(folder, frames, caption: str) -> np.ndarray:
    """softmax(itm logits)[:, 1] through the model's own retrieval forward, on PIL images, with the caption's first
    token replaced by [ENC] (looked up in the vocabulary file) and the text truncated at 35 tokens."""
    import torch
    from PIL import Image
    from transformers import BlipForImageTextRetrieval, BlipProcessor

    model, processor = BlipForImageTextRetrieval.from_pretrained(folder).eval(), BlipProcessor.from_pretrained(folder)
    enc = (Path(folder) / "vocab.txt").read_text().splitlines().index("[ENC]")
    pixels = processor.image_processor(images=[Image.fromarray(f) for f in frames], return_tensors="pt")["pixel_values"]
    tokens = processor.tokenizer([caption], truncation=True, max_length=35, return_tensors="pt")
    ids = tokens["input_ids"].clone()
    ids[:, 0] = enc
    n = len(frames)
    with torch.no_grad():
        out = model(input_ids=ids.expand(n, -1), attention_mask=tokens["attention_mask"].expand(n, -1),
                    pixel_values=pixels, use_itm_head=True)
    return torch.softmax(out.itm_score, dim=-1)[:, 1].numpy()


def test_blip_scores_are_the_itm_match_probability(tiny_blip):
    import torch

    frames = np.random.default_rng(0).integers(0, 256, size=(5, 40, 56, 3), dtype=np.uint8)
    scorer = BlipItmScorer(str(tiny_blip))
    scores = scorer.scores(scorer.vision(frames), [q for q, _ in QUESTIONS])
    assert scores.shape == (len(QUESTIONS), 5) and np.all((scores >= 0) & (scores <= 1))
    for row, (_, caption) in zip(scores, QUESTIONS):
        np.testing.assert_allclose(row, reference_itm(tiny_blip, frames, caption), atol=1e-5)
    assert np.ptp(scores, axis=1).min() > 1e-3  # the frames matter (a constant would pass the comparison trivially)
    assert np.ptp(scores, axis=0).max() > 1e-3  # and so does the question
    # [ENC] replaces [CLS]: the reference with [CLS] kept (transformers' own retrieval input) scores differently
    tokens = scorer.processor.tokenizer([QUESTIONS[0][1]], return_tensors="pt")
    assert int(scorer.tokens(QUESTIONS[0][0])["input_ids"][0, 0]) == scorer.enc_token_id == 6
    assert int(tokens["input_ids"][0, 0]) == scorer.processor.tokenizer.cls_token_id != 6
    with torch.no_grad():
        pixels = scorer.processor.image_processor(images=list(frames), return_tensors="pt")["pixel_values"]
        cls = scorer.model(input_ids=tokens["input_ids"].expand(5, -1), pixel_values=pixels, use_itm_head=True)
    assert not np.allclose(torch.softmax(cls.itm_score, -1)[:, 1].numpy(), scores[0], atol=1e-4)
    # batching over frames does not change a score
    np.testing.assert_allclose(scorer.scores(scorer.vision(frames, batch_size=2), [QUESTIONS[1][0]], batch_size=3),
                               scores[1:2], atol=1e-6)
    assert scorer.scores(None, ["q"]).shape == (1, 0)


def test_blip_text_is_truncated_at_35_tokens(tiny_blip):
    scorer = BlipItmScorer(str(tiny_blip))
    long = QUESTIONS[2][0]
    assert len(scorer.processor.tokenizer(lavis_caption(long))["input_ids"]) > 35  # the question is long enough
    assert scorer.tokens(long)["input_ids"].shape == (1, 35)
    frames = np.random.default_rng(1).integers(0, 256, size=(3, 32, 32, 3), dtype=np.uint8)
    vision = scorer.vision(frames)
    whole, tailed, short = scorer.scores(vision, [long, long + " and a tail past the limit", "what shape is it?"])
    np.testing.assert_array_equal(tailed, whole)  # the tail lies past token 35
    assert not np.allclose(short, whole, atol=1e-4)


def test_enc_token_falls_back_to_the_last_text_id(tmp_path):
    folder = build_tiny_blip(tmp_path / "no-enc", seed=1, with_enc_token=False)
    assert "[ENC]" not in (folder / "vocab.txt").read_text().split()
    scorer = BlipItmScorer(str(folder))
    assert scorer.enc_token_id == scorer.model.config.text_config.vocab_size - 1 == \
        len((folder / "vocab.txt").read_text().splitlines()) - 1


# -- open_clip --------------------------------------------------------------------------------------------------------
def test_open_clip_features_are_encode_image_of_its_preprocess(tiny_open_clip):
    import open_clip
    import torch
    from PIL import Image

    _, name, weights = tiny_open_clip.split(":", 2)
    frames = np.random.default_rng(2).integers(0, 256, size=(6, 36, 52, 3), dtype=np.uint8)
    encoder = load_encoder(tiny_open_clip)
    model, _, preprocess = open_clip.create_model_and_transforms(name, pretrained=weights)
    model.eval()
    with torch.no_grad():
        images = model.encode_image(torch.stack([preprocess(Image.fromarray(f)) for f in frames])).numpy()
        texts = model.encode_text(open_clip.get_tokenizer(name)(["a red square", "what shape?"])).numpy()
    feats = encoder.image_features(frames, batch_size=4)
    assert feats.shape == (6, 16) and feats.dtype == np.float32
    np.testing.assert_allclose(feats, images, atol=1e-5)
    np.testing.assert_allclose(encoder.text_features(["a red square", "what shape?"]), texts, atol=1e-5)
    assert not np.allclose(np.linalg.norm(feats, axis=1), 1.0, atol=1e-3)  # raw projections, not unit vectors


def test_open_clip_encoder_id_follows_the_checkpoint_file(tiny_open_clip, tmp_path):
    _, name, weights = tiny_open_clip.split(":", 2)
    path = tmp_path / "weights.safetensors"
    shutil.copyfile(weights, path)
    first = OpenClipEncoder(f"open_clip:{name}:{path}")
    assert OpenClipEncoder(f"open_clip:{name}:{path}").encoder_id == first.encoder_id  # same file, same id
    other = Path(build_tiny_open_clip(tmp_path / "seed1", seed=1).split(":", 2)[2])
    assert other.stat().st_size == path.stat().st_size  # same architecture: only the content differs
    shutil.copyfile(other, path)  # retrained into the same file
    second = OpenClipEncoder(f"open_clip:{name}:{path}")
    assert second.encoder_id != first.encoder_id and str(path.resolve()) in second.encoder_id
    frames = np.random.default_rng(3).integers(0, 256, size=(2, 32, 32, 3), dtype=np.uint8)
    assert not np.allclose(first.image_features(frames), second.image_features(frames))
    # `random` weights: one encoder id, so every load must give the same model (else cached features go stale)
    a, b = OpenClipEncoder(f"open_clip:{name}:random"), OpenClipEncoder(f"open_clip:{name}:random")
    assert a.encoder_id == b.encoder_id and a.encoder_id.startswith(f"open_clip:{name}:random@")
    np.testing.assert_array_equal(a.image_features(frames), b.image_features(frames))


# -- decode counting through runs -------------------------------------------------------------------------------------
def test_a_second_sampler_or_backbone_decodes_no_features_again(tiny_clip, needle_root, needle_samples, tmp_path,
                                                                 decodes):
    videos = by_video(needle_samples)
    assert len(videos) == 2 and all(len(g) == 4 for g in videos.values())  # several questions per video
    grid = {v: len(grid_of(v)) for v in videos}
    assert all(35 <= n <= 55 for n in grid.values())

    # run 1: top-k under the tiny CLIP decodes each video's grid once (not once per question); the backbone's frames
    # are grid frames, kept from that pass
    run1 = Run(needle_cfg(needle_root, tmp_path, [f"topk:encoder={tiny_clip}"]), progress=False)
    dirs1 = run1.execute()
    assert decodes == Counter(grid)
    assert run1.inputs.stats["frames_decoded"] == sum(grid.values())
    texts = {s.question for s in needle_samples}  # per (text, encoder): a question asked of both videos counts once
    assert run1.inputs.stats["image_computed"] == 2 and run1.inputs.stats["text_computed"] == len(texts) < 8
    kinds = Counter(m["kind"] for m in manifests(tmp_path / "cache"))
    assert kinds == {"image": 2, "text": len(texts)}
    assert {m["text"] for m in manifests(tmp_path / "cache") if m["kind"] == "text"} == texts

    # run 2: two other samplers on the same features decode only what the backbone reads
    decodes.clear()
    run2 = Run(needle_cfg(needle_root, tmp_path, [f"aks:encoder={tiny_clip},mode=fixed", f"tspo:encoder={tiny_clip}"]),
               progress=False)
    dirs2 = run2.execute()
    assert len(dirs2) == 2 and all(len(predictions(d)) == 8 for d in dirs2)
    assert all(len(r["selection"]["frame_indices"]) == K for d in dirs2 for r in predictions(d))
    assert decodes == backbone_frames(dirs2)
    assert run2.inputs.stats["frames_decoded"] == 0 and run2.inputs.stats["image_computed"] == 0

    # run 3: another backbone, same sampler: again only the backbone's frames
    decodes.clear()
    dirs3 = Run(needle_cfg(needle_root, tmp_path, [f"topk:encoder={tiny_clip}"], backbone="frame-count-probe"),
                progress=False).execute()
    assert set(dirs3).isdisjoint(dirs1)
    assert decodes == backbone_frames(dirs3)
    assert Counter(m["kind"] for m in manifests(tmp_path / "cache")) == kinds  # nothing new in the store
    # the same selections as run 1: the cached features are the ones run 1 computed
    assert [r["selection"] for r in predictions(dirs3[0])] == [r["selection"] for r in predictions(dirs1[0])]


def test_blip_scores_are_cached_per_video_and_question(tiny_blip, needle_root, needle_samples, tmp_path, decodes):
    videos = by_video(needle_samples)
    grid = {v: len(grid_of(v)) for v in videos}
    run1 = Run(needle_cfg(needle_root, tmp_path, [f"aks:encoder={tiny_blip},mode=fixed"]), progress=False)
    dirs1 = run1.execute()
    assert decodes == Counter(grid)  # one pass per video, its answers included
    assert all(len(predictions(d)) == 8 for d in dirs1)
    itm = [m for m in manifests(tmp_path / "cache") if m["kind"] == "itm"]
    assert sorted((str(Path(m["video"]).resolve()), m["text"]) for m in itm) == \
        sorted((v, s.question) for v, g in videos.items() for s in g)
    assert all(m["n"] == grid[str(Path(m["video"]).resolve())] and m["shape"] == [m["n"]] for m in itm)
    assert all(m["encoder"].startswith(str(Path(tiny_blip).resolve())) for m in itm)

    # a rerun under another backbone, and another sampler on the same scores: no feature decode
    decodes.clear()
    dirs2 = Run(needle_cfg(needle_root, tmp_path, [f"aks:encoder={tiny_blip},mode=fixed", f"topk:encoder={tiny_blip}"],
                           backbone="frame-count-probe"), progress=False).execute()
    assert decodes == backbone_frames(dirs2)
    assert len([m for m in manifests(tmp_path / "cache") if m["kind"] == "itm"]) == 8

    # the cached scores are the scorer's on the grid's frames
    from safetensors.numpy import load_file

    scorer = BlipItmScorer(str(tiny_blip))
    video, group = next(iter(videos.items()))
    g = grid_of(video)
    with open_video(video) as reader:
        expected = scorer.scores(scorer.vision(reader.get_frames(g.indices)), [s.question for s in group])
    stored = {m["text"]: m["key"] for m in itm if str(Path(m["video"]).resolve()) == video}
    for row, s in zip(expected, group):
        key = stored[s.question]
        np.testing.assert_allclose(load_file(tmp_path / "cache" / key[:2] / f"{key}.safetensors")["features"], row,
                                   atol=1e-6)


# -- keys, manifests, corruption --------------------------------------------------------------------------------------
class StubEncoder:
    def __init__(self, encoder_id="enc@1", preprocess_id="pre1"):
        self.encoder_id, self.preprocess_id = encoder_id, preprocess_id


def test_cache_key_covers_grid_dtype_encoder_and_video_file(needle_root, tmp_path):
    video = tmp_path / "v.mp4"
    shutil.copyfile(next(needle_root.glob("*.mp4")), video)
    store, other_dtype = FeatureStore(tmp_path / "c"), FeatureStore(tmp_path / "c", dtype="bfloat16")
    enc = StubEncoder()
    base = store.image_key(enc, str(video), grid_of(video))
    assert store.image_key(StubEncoder(), str(video), grid_of(video)) == base  # deterministic
    changed = {
        "grid int-fps": store.image_key(enc, str(video), grid_of(video, "int-fps")),  # same frames at 4 fps
        "grid count:10": store.image_key(enc, str(video), grid_of(video, "count:10")),
        "dtype": other_dtype.image_key(enc, str(video), grid_of(video)),
        "encoder id": store.image_key(StubEncoder(encoder_id="enc@2"), str(video), grid_of(video)),
        "preprocess": store.image_key(StubEncoder(preprocess_id="pre2"), str(video), grid_of(video)),
    }
    grid = grid_of(video)
    st = video.stat()
    os.utime(video, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    changed["mtime"] = store.image_key(enc, str(video), grid)
    with open(video, "ab") as f:
        f.write(b"\0")
    os.utime(video, ns=(st.st_atime_ns, st.st_mtime_ns))  # mtime as at first: only the size differs
    changed["size"] = store.image_key(enc, str(video), grid)
    assert len(set(changed.values()) | {base}) == len(changed) + 1, changed
    assert store.itm_key(enc, str(video), grid, "q1") != store.itm_key(enc, str(video), grid, "q2")
    assert store.text_key(enc, "q1") != store.text_key(StubEncoder(encoder_id="enc@2"), "q1")


def test_the_look_ahead_reads_no_entry_and_the_feature_pass_reads_each_once(needle_root, tmp_path, monkeypatch):
    """The worker's look ahead (`missing(count=False)`: decode this grid early?) goes by the entries' files and reads
    none, so a video with more entries than the store's 16 recent arrays is read once, by the feature pass."""
    from harness.features.store import FeatureCache

    video = str(next(needle_root.glob("*.mp4")))
    grid = grid_of(video)
    store = FeatureStore(tmp_path / "c")
    encoders = [StubEncoder(encoder_id=f"enc@{i}") for i in range(20)]
    for enc in encoders:
        enc.dim = 3
        store.cache.save(store.image_key(enc, video, grid), np.ones((len(grid), 3), np.float32), {"kind": "image"})
    absent = StubEncoder(encoder_id="enc@absent")
    absent.dim = 3
    loads = Counter()
    real = FeatureCache.load

    def counting(self, key, *args, **kwargs):
        loads[key] += 1
        return real(self, key, *args, **kwargs)

    monkeypatch.setattr(FeatureCache, "load", counting)
    [image, _, _] = store.missing(video, grid, encoders + [absent], count=False)
    assert image == [absent] and not loads
    [image, _, _] = store.missing(video, grid, encoders + [absent])  # the feature pass: reads and checks each
    assert image == [absent] and set(loads.values()) == {1} and len(loads) == 21
    assert store.stats["image_cached"] == 20


def test_manifest_and_stored_features(tiny_clip, needle_root, tmp_path, decodes):
    from safetensors.numpy import load_file

    video = str((tmp_path / "v.mp4").resolve())  # a copy: this test touches the file
    shutil.copyfile(next(needle_root.glob("*.mp4")), video)
    store = FeatureStore(tmp_path / "cache", chunk_size=16)
    encoder = store.encoder(str(tiny_clip))
    grid = grid_of(video)
    with open_video(video) as reader:
        feats = store.image_features(encoder, video, grid, reader)
        expected = encoder.image_features(reader.get_frames(grid.indices))  # one batch, not chunks
    np.testing.assert_allclose(feats, expected, atol=1e-5)
    [manifest] = manifests(tmp_path / "cache")
    assert {k: manifest[k] for k in ("kind", "encoder", "grid", "dtype", "n", "shape")} == {
        "kind": "image", "encoder": encoder.encoder_id, "grid": "1fps", "dtype": "float32", "n": len(grid),
        "shape": [len(grid), 32]}
    stored = load_file(tmp_path / "cache" / manifest["key"][:2] / f"{manifest['key']}.safetensors")
    np.testing.assert_array_equal(stored["frame_indices"], np.arange(0, grid.frame_count, 4))  # 4 fps: every 4th
    np.testing.assert_allclose(stored["timestamps"], np.arange(len(grid)) * 1.0)
    assert not any(p.name.endswith(".tmp") for p in (tmp_path / "cache").rglob("*"))

    # touching the video (a new mtime) makes the entry stale: the next read decodes again
    decodes.clear()
    st = Path(video).stat()
    os.utime(video, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    with open_video(video) as reader:
        store.image_features(encoder, video, grid, reader)
    assert decodes == {video: len(grid)}
    assert len(manifests(tmp_path / "cache")) == 2  # a second entry; the stale one is never read


def test_a_corrupt_entry_is_recomputed_for_its_video_only(tiny_clip, needle_root, needle_samples, tmp_path, decodes):
    videos = list(by_video(needle_samples))
    store = FeatureStore(tmp_path / "cache")
    encoder = store.encoder(str(tiny_clip))
    for v in videos:
        with open_video(v) as reader:
            store.ensure(v, grid_of(v), reader, image=[encoder])
    first = store.cache.path(store.image_key(encoder, videos[0], grid_of(videos[0])))
    whole = first.read_bytes()
    first.write_bytes(whole[: len(whole) // 2])  # outside damage
    decodes.clear()
    again = FeatureStore(tmp_path / "cache")
    with pytest.warns(UserWarning, match=first.name):
        for v in videos:
            with open_video(v) as reader:
                again.ensure(v, grid_of(v), reader, image=[again.encoder(str(tiny_clip))])
    assert decodes == {videos[0]: len(grid_of(videos[0]))}
    assert again.stats["image_computed"] == 1 and again.stats["image_cached"] == 1
    assert first.read_bytes() != whole[: len(whole) // 2]
    assert again.cache.load(store.image_key(encoder, videos[0], grid_of(videos[0]))).shape == \
        (len(grid_of(videos[0])), 32)


# -- `harness features` -----------------------------------------------------------------------------------------------
def needle_args(root) -> list[str]:
    return ["--task", "needle", *[a for k, v in NEEDLE.items() for a in ("--task-arg", f"{k}={v}")],
            "--task-arg", f"root={root}"]


def harness(*args, home):
    return subprocess.run([sys.executable, "-m", "harness", *args], capture_output=True, text=True,
                          env={**os.environ, "LONGVIDEO_HARNESS_HOME": str(home), "HF_HUB_OFFLINE": "1"})


def frames_reported(stdout: str) -> int:
    """The frames a `harness features` run says it decoded (0 when it names none)."""
    found = re.search(r"frames_decoded[ :=]+(\d+)", stdout) or re.search(r"\((\d+) frames\)", stdout)
    return int(found.group(1)) if found else 0


def image_entries(cache) -> dict:
    """video -> safetensors file of its image features."""
    return {str(Path(m["video"]).resolve()): Path(cache) / m["key"][:2] / f"{m['key']}.safetensors"
            for m in manifests(cache) if m["kind"] == "image"}


def test_features_command_computes_once_and_resumes(tiny_clip, needle_root, needle_samples, tmp_path, decodes,
                                                    capsys):
    """`python -m harness features` fills the store; the same command again (here in this process, so decodes are
    counted at the reader, and the keys must agree across processes) decodes nothing; after an interruption (one
    video's entry never written) it decodes that video alone."""
    cache = tmp_path / "cache"
    args = ["features", *needle_args(needle_root), "--encoder", str(tiny_clip), "--cache-dir", str(cache),
            "--no-progress"]
    grid = {v: len(grid_of(v)) for v in by_video(needle_samples)}

    first = harness(*args, home=tmp_path / "home")
    assert first.returncode == 0, first.stderr
    assert frames_reported(first.stdout) == sum(grid.values())
    entries = image_entries(cache)
    assert set(entries) == set(grid)
    texts = {s.question for s in needle_samples}
    assert Counter(m["kind"] for m in manifests(cache)) == {"image": 2, "text": len(texts)}

    written = {p: p.stat().st_mtime_ns for p in cache.rglob("*") if p.is_file()}
    assert main(args) == 0
    assert decodes == Counter() and frames_reported(capsys.readouterr().out) == 0
    assert {p: p.stat().st_mtime_ns for p in cache.rglob("*") if p.is_file()} == written  # nothing rewritten

    kept, lost = sorted(entries)
    entries[lost].unlink()
    assert main(args) == 0
    assert decodes == {lost: grid[lost]}
    assert frames_reported(capsys.readouterr().out) == grid[lost]
    assert entries[lost].is_file() and entries[kept].stat().st_mtime_ns == written[entries[kept]]


def test_features_for_two_encoders_in_one_pass_then_runs_decode_no_features(tiny_clip, tiny_blip, needle_root,
                                                                             needle_samples, tmp_path, decodes,
                                                                             capsys):
    """One decode pass per video feeds every encoder (CLIP image features and BLIP scores of every question); runs
    of samplers on either then decode only the backbone's frames."""
    grid = {v: len(grid_of(v)) for v in by_video(needle_samples)}
    assert main(["features", *needle_args(needle_root), "--encoder", str(tiny_clip), "--encoder", str(tiny_blip),
                 "--cache-dir", str(tmp_path / "cache"), "--no-progress"]) == 0
    assert decodes == grid
    assert Counter(m["kind"] for m in manifests(tmp_path / "cache")) == {
        "image": 2, "itm": 8, "text": len({s.question for s in needle_samples})}
    decodes.clear()
    dirs = Run(needle_cfg(needle_root, tmp_path, [f"topk:encoder={tiny_clip}", f"aks:encoder={tiny_blip},mode=fixed"]),
               progress=False).execute()
    assert decodes == backbone_frames(dirs)
    capsys.readouterr()


def test_features_command_bad_encoder_is_exit_2_one_line(needle_root, tmp_path):
    result = harness("features", *needle_args(needle_root), "--encoder", str(tmp_path / "no" / "such" / "clip"),
                     "--cache-dir", str(tmp_path / "cache"), "--no-progress", home=tmp_path / "home")
    assert result.returncode == 2
    err = result.stderr.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err and "no such folder" in err
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").rglob("*.safetensors"))


def test_features_command_broken_video_is_exit_3_and_the_rest_is_computed(tiny_clip, tmp_path, capsys, decodes):
    root = tmp_path / "videos"
    samples = TASKS.create("needle", root=str(root), **NEEDLE).samples()
    broken, good = list(by_video(samples))
    Path(broken).write_bytes(b"not a video at all")
    args = ["features", *needle_args(root), "--encoder", str(tiny_clip), "--cache-dir", str(tmp_path / "cache"),
            "--no-progress"]
    assert main(args) == 3
    err = capsys.readouterr().err
    assert Path(broken).name in err and "Traceback" not in err and Path(good).name not in err
    assert set(image_entries(tmp_path / "cache")) == {good}
    assert decodes == {good: len(grid_of(good))}


# -- `harness select` -------------------------------------------------------------------------------------------------
def read_jsonl(path) -> tuple[dict, list[dict]]:
    lines = [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
    return lines[0], lines[1:]


def test_select_writes_canonical_records_that_replay(tiny_clip, needle_root, needle_samples, tmp_path, capsys):
    out = tmp_path / "sel.jsonl"
    spec = f"topk:encoder={tiny_clip}"
    common = [*needle_args(needle_root), "--cache-dir", str(tmp_path / "cache"), "--frames", str(K), "--no-progress"]
    assert main(["select", *common, "--sampler", spec, "--out", str(out)]) == 0
    assert "wrote 8 selections" in capsys.readouterr().out
    header, records = read_jsonl(out)
    assert header["format"] == "longvideo-harness-selections" and header["sampler"]["name"] == "topk"
    assert [r["sample_id"] for r in records] == [s.id for s in needle_samples]
    config_hash = SAMPLERS.create("topk", encoder=str(tiny_clip)).config_hash
    encoder = ClipEncoder(str(tiny_clip))
    samples = {s.id: s for s in needle_samples}
    for r in records:
        assert set(r) == RECORD_KEYS and r["sampler"] == "topk" and r["config_hash"] == config_hash
        assert r["grid"] == "1fps" and r["video"] == samples[r["sample_id"]].video
        grid = grid_of(r["video"])
        assert len(r["positions"]) == K and r["positions"] == sorted(set(r["positions"]))
        assert r["frame_indices"] == [int(grid.indices[p]) for p in r["positions"]]
        assert r["frame_indices"] == [4 * p for p in r["positions"]]  # 4 fps video, 1 fps grid
        np.testing.assert_allclose(r["timestamps"], [i / 4.0 for i in r["frame_indices"]])
        # top-k by cosine, recomputed from the frames
        with open_video(r["video"]) as reader:
            images = encoder.image_features(reader.get_frames(grid.indices))
        text = encoder.text_features([samples[r["sample_id"]].question])[0]
        cosine = images @ text / (np.linalg.norm(images, axis=1) * np.linalg.norm(text))
        assert r["positions"] == sorted(np.argsort(-cosine)[:K].tolist())

    stored = load_selections(out)
    assert stored.format == "harness" and stored.missing == []
    assert {k: list(e.frame_indices) for k, e in stored.entries.items()} == \
        {r["sample_id"]: r["frame_indices"] for r in records}

    replayed = tmp_path / "replayed.jsonl"
    assert main(["select", *common, "--grid", "all", "--sampler", f"replay:file={out}", "--out", str(replayed)]) == 0
    _, again = read_jsonl(replayed)
    assert [r["frame_indices"] for r in again] == [r["frame_indices"] for r in records]
    assert all(r["grid"] == "all" and r["positions"] == r["frame_indices"] and r["sampler"] == "replay"
               for r in again)
    np.testing.assert_allclose([t for r in again for t in r["timestamps"]],
                               [t for r in records for t in r["timestamps"]])
    capsys.readouterr()
    assert main(["select", *common, "--sampler", f"replay:file={out}", "--out", str(tmp_path / "x.jsonl")]) == 2
    assert "needs --grid all" in capsys.readouterr().err


def test_select_tspo_json_over_a_small_annotation_file(tiny_clip, needle_root, tmp_path, capsys):
    root = tmp_path / "lvb-videos"
    root.mkdir()
    for name, src in zip(("a.mp4", "b.mp4"), sorted(needle_root.glob("*.mp4"))):
        shutil.copyfile(src, root / name)
    records = [{"video_id": v, "question": q, "candidates": ["red", "green", "blue", "yellow"], "correct_choice": 0,
                "id": f"{v}_{i}", "video_path": f"{v}.mp4", "duration": 45.0, "duration_group": 60,
                "question_category": "TOS"}
               for v, i, q in [("a", 0, "What colour is the square?"), ("a", 1, "Which object appears first?"),
                               ("b", 0, "How many times does the red star appear?")]]
    annotations = tmp_path / "lvb_val.json"
    annotations.write_text(json.dumps(records))
    common = ["--task", "longvideobench", "--task-arg", f"annotations={annotations}", "--video-root", str(root),
              "--sampler", f"topk:encoder={tiny_clip}", "--frames", str(K), "--cache-dir", str(tmp_path / "cache"),
              "--no-progress"]
    assert main(["select", *common, "--out", str(tmp_path / "sel.jsonl")]) == 0
    _, harness_records = read_jsonl(tmp_path / "sel.jsonl")
    chosen = {r["sample_id"]: r["frame_indices"] for r in harness_records}
    assert main(["select", *common, "--format", "tspo", "--out", str(tmp_path / "tspo.json")]) == 0
    assert "3 of 3 records have a frame_idx" in capsys.readouterr().out
    written = json.loads((tmp_path / "tspo.json").read_text())
    assert [{k: v for k, v in w.items() if k != "frame_idx"} for w in written] == records
    for w in written:
        assert all(isinstance(i, float) for i in w["frame_idx"])
        assert w["frame_idx"] == [float(i) for i in sorted(chosen[w["id"]])] and len(w["frame_idx"]) == K
    back = load_selections(tmp_path / "tspo.json")
    assert back.kind == "longvideobench" and {k: list(e.frame_indices) for k, e in back.entries.items()} == chosen


def test_select_takes_exactly_one_sampler(tiny_clip, needle_root, tmp_path, capsys):
    config = tmp_path / "run.json"
    config.write_text(json.dumps({"samplers": ["uniform", f"topk:encoder={tiny_clip}"]}))
    assert main(["select", "--config", str(config), *needle_args(needle_root), "--out", str(tmp_path / "s.jsonl")]) == 2
    err = capsys.readouterr().err.strip()
    assert "exactly one sampler" in err and one_line(err)
    assert not (tmp_path / "s.jsonl").exists()
