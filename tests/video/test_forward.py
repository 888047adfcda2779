"""Decoding that does less work returns exactly the frames of a full sequential decode (issue 20).

The reference is every frame decoded in one plain pass (PyAV, no seeks, no skipping); the readers under test read
sparse and dense index sets, repeats and the first and last frame, in one call and in chunks, with B-frames
(x264 b-pyramid: non-reference B-frames the PyAV reader skips) and long GOPs, and on a needle video."""
import av
import numpy as np
import pytest

from harness.video.forward import ForwardPlan, sequential_steps
from harness.video.grid import grid_indices
from harness.video.reader import available_backends, iter_frames, open_video

BACKENDS = [b for b in ("decord", "pyav") if b in available_backends()]


def _frames(n: int, height: int = 240, width: int = 320):
    """Moving texture and a moving block: motion that makes x264 use P- and B-frames."""
    rng = np.random.default_rng(7)
    base = rng.integers(0, 256, (height, 2 * width, 3), dtype=np.uint8)
    for i in range(n):
        frame = np.ascontiguousarray(base[:, (3 * i) % width:(3 * i) % width + width])
        y, x = (5 * i) % (height - 40), (7 * i) % (width - 40)
        frame[y:y + 40, x:x + 40] = (i * 13) % 256
        yield frame


def _write_bframes(path, n: int, gop: int, bframes: int) -> None:
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=30, options={
            "preset": "veryfast", "crf": "28",
            "x264-params": f"keyint={gop}:min-keyint={gop}:scenecut=0:bframes={bframes}:b-pyramid=normal"})
        stream.width, stream.height, stream.pix_fmt = 320, 240, "yuv420p"
        for i, rgb in enumerate(_frames(n)):
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts = i
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))


def _full_decode(path) -> np.ndarray:
    """Every frame in presentation order, one plain PyAV pass: the reference."""
    with av.open(str(path)) as container:
        frames = sorted(((f.pts, f.to_ndarray(format="rgb24")) for f in container.decode(video=0)),
                        key=lambda x: x[0])
    return np.stack([f for _, f in frames])


def gop250_video(root):
    """A 320-frame x264 video with 3 B-frames and a 250-frame GOP (the bench's GOP), and its full decode."""
    path = root / "gop250_bf3.mp4"
    _write_bframes(path, 320, 250, 3)
    return path, _full_decode(path)


VIDEOS = {"gop250_bf2.mp4": (300, 250, 2), "gop250_bf3.mp4": (320, 250, 3), "gop30_bf3.mp4": (200, 30, 3)}


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    root = tmp_path_factory.mktemp("forward")
    out = {}
    for name, (n, gop, bf) in VIDEOS.items():
        _write_bframes(root / name, n, gop, bf)
        out[name] = (root / name, _full_decode(root / name))
    from tasks.needle.generate import make_specs
    from tasks.needle.render import write_spec_video

    spec = make_specs("test", 1, seed=3, min_duration=40.0, max_duration=40.0)[0]
    path = write_spec_video(spec, root / "needle.mp4")
    out["needle.mp4"] = (root / "needle.mp4", _full_decode(path))
    return out


def _index_sets(n: int, fps: float, rng) -> dict:
    return {
        "1fps": grid_indices(n, fps, "1fps"),
        "k64": np.unique(np.linspace(0, n - 1, 64).astype(int)),
        "k8": np.unique(np.linspace(0, n - 1, 8).astype(int)),
        "dense": np.arange(n)[np.arange(n) % 3 != 1],
        "all": np.arange(n),
        "ends": np.array([0, n - 1]),
        "last": np.array([n - 1]),
        "repeats": np.sort(np.concatenate([[0, 0], rng.choice(n, 20), [n - 1, n - 1]])),
        "random": np.sort(rng.choice(n, 40, replace=False)),
    }


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", [*VIDEOS, "needle.mp4"])
def test_frames_identical_to_full_decode(videos, name, backend):
    path, reference = videos[name]
    rng = np.random.default_rng(0)
    with open_video(path, backend) as reader:
        assert reader.meta.frame_count == len(reference)
        sets = _index_sets(len(reference), reader.meta.fps, rng)
        for label, idx in sets.items():  # one reader, many reads: forward, then back to the start
            got = reader.get_frames(idx)
            assert np.array_equal(got, reference[idx]), (name, backend, label)
    with open_video(path, backend) as reader:  # in chunks, as the feature pass reads
        idx = sets["1fps"]
        got = np.concatenate([f for _, f in iter_frames(reader, idx, chunk_size=7)])
        assert np.array_equal(got, reference[idx])


@pytest.mark.skipif("pyav" not in BACKENDS, reason="PyAV is not installed")
def test_pyav_skips_non_reference_frames_only_where_unwanted(videos):
    path, reference = videos["gop250_bf3.mp4"]
    idx = grid_indices(len(reference), 30.0, "1fps")
    with open_video(path, "pyav") as reader:
        assert np.array_equal(reader.get_frames(idx), reference[idx])
        assert reader.counts["skippable"] > 0.8 * (idx[-1] - len(idx))  # most frames between are unwanted
    with open_video(path, "pyav") as reader:
        assert np.array_equal(reader.get_frames(np.arange(len(reference))), reference)
        assert reader.counts["skippable"] == 0


def test_forward_plan_wants_the_request_and_all_after_it():
    plan = ForwardPlan([3, 7, 7, 12])
    assert [i for i in range(16) if plan.wants(i)] == [3, 7, 12, 13, 14, 15]
    assert plan.wants(None)  # a packet without a frame index (flush) is always decoded
    assert all(ForwardPlan([]).wants(i) for i in range(4))


def test_sequential_steps_skip_forward_and_seek_only_far_ahead_or_back():
    key_before = np.repeat(np.arange(0, 80, 20), 20)  # keyframes at 0, 20, 40, 60
    steps = sequential_steps(np.array([0, 0, 4, 19, 22, 45, 45, 79, 2]), key_before, pos=0)
    # 22: its keyframe 20 is next to 19; 45: 17 frames (23..39) lie before its keyframe 40 (> SEEK_FRAMES);
    # 79: 14
    assert steps == [("reuse", 0), ("reuse", 0), ("skip", 3), ("skip", 14), ("skip", 2), ("seek", 45),
                     ("reuse", 45), ("skip", 33), ("seek", 2)]
    assert sequential_steps(np.array([5]), key_before, pos=-1) == [("seek", 5)]
