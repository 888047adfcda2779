"""The bench's reference loop can decode as lmms-eval's loaders do (`--reference-decode stock`): decord's
`get_batch`, PyAV decoding every frame up to the last wanted. Those frames are the harness reader's frames, so the
two loops still answer on the same pixels; only the work differs. The expected frames are a plain full PyAV decode
(independent of both code paths), on an x264 video with B-frames and a 250-frame GOP like the bench's."""
import numpy as np
import pytest

from harness.bench.config import BenchConfig
from harness.bench.loops import stock_frames, uniform_frames
from harness.records import Sample
from harness.video.reader import available_backends
from tests.video.test_forward import gop250_video

BACKENDS = [b for b in ("decord", "pyav") if b in available_backends()]


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    return gop250_video(tmp_path_factory.mktemp("stock"))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("k", [8, 64])
def test_stock_frames_are_the_full_decodes_frames(video, backend, k):
    path, full = video
    idx = np.linspace(0, len(full) - 1, k, dtype=int)
    frames = stock_frames(str(path), idx, backend)
    assert frames.shape == (k, 240, 320, 3) and frames.dtype == np.uint8
    assert np.array_equal(frames, full[idx])


@pytest.mark.parametrize("backend", BACKENDS)
def test_reference_frames_equal_with_either_decoding(video, backend):
    path, full = video
    sample = Sample(id="q", video=str(path), question="?", options=("a", "b"), answer=0)
    cfg = BenchConfig(frames=16, decode_backend=backend)
    stock, ts_stock = uniform_frames(sample, cfg, stock=True)
    ours, ts_ours = uniform_frames(sample, cfg, stock=False)
    idx = np.linspace(0, len(full) - 1, 16, dtype=int)
    assert np.array_equal(stock, full[idx]) and np.array_equal(ours, full[idx])
    assert ts_stock == ts_ours == (idx / 30).tolist()
