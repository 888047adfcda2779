"""The nvdec reader's logic on CPU, with PyNvVideoCodec replaced by a stand-in that decodes with PyAV into NV12
arrays (what NVDEC hands back: the frames in the decoder's own index order, NV12 planes through DLPack, a pts per
frame). Checked: frames equal the PyAV reader's exactly (index, repeats, colour matrix), the pts check refuses a
decoder whose index disagrees, a stream with B-frames is refused, the process and availability refusals. The real decoder runs in
scripts/bench_long.sh on the GPU machine."""
import sys
import types

import av
import numpy as np
import pytest

from harness.errors import HarnessError, VideoError
from harness.util.synth import decode_index, write_index_clip
from harness.video.reader import check_backend, open_video

torch = pytest.importorskip("torch")


class _Frame:
    def __init__(self, nv12, pts):
        self._a, self._pts = nv12, pts

    def getPTS(self):
        return self._pts

    def __dlpack__(self, **kw):
        return self._a.__dlpack__(**kw)

    def __dlpack_device__(self):
        return self._a.__dlpack_device__()


def _fake_module(shift: int = 0):
    """A PyNvVideoCodec stand-in; `shift` makes its index disagree with the container's by that many frames."""
    class SimpleDecoder:
        def __init__(self, path, gpu_id=0, use_device_memory=True, cuda_stream=0, output_color_type=None):
            with av.open(path) as c:
                frames = sorted(c.decode(video=0), key=lambda f: f.pts)
                self._frames = [(f.to_ndarray(format="nv12"), f.pts) for f in frames]

        def get_batch_frames_by_index(self, indices):
            return [_Frame(*self._frames[min(i + shift, len(self._frames) - 1)]) for i in indices]

    return types.SimpleNamespace(SimpleDecoder=SimpleDecoder, OutputColorType=types.SimpleNamespace(NATIVE=0))


@pytest.fixture
def fake(monkeypatch):
    monkeypatch.setitem(sys.modules, "PyNvVideoCodec", _fake_module())


@pytest.fixture
def clip(tmp_path):
    path = tmp_path / "index.mp4"
    write_index_clip(path, 40, 10, gop=12, bframes=0)  # nvdec takes streams without B-frames only
    return str(path)


def smoke_without_bframes(monkeypatch, root) -> dict:
    """The smoke task's options for videos written without B-frames into `root` (what nvdec decodes)."""
    import functools

    import tasks.smoke
    from harness.util.synth import write_video

    monkeypatch.setattr(tasks.smoke, "write_video", functools.partial(write_video, bframes=0))
    return {"videos": 3, "duration": 12.0, "root": str(root)}


def test_a_stream_with_b_frames_is_refused_when_opened(fake, tmp_path):
    # on an H100 (PyNvVideoCodec 2.2.4, x264 needle videos with B-frames) NVDEC labelled the frames with the
    # decode-order timeline (frame 0 came back with pts -8192 where the container has 0), so the per-frame pts check
    # can confirm no frame of such a stream (docs/decode.md): it is refused before a decoder is made
    from harness.video.nvdec import NvdecReader

    path = tmp_path / "b.mp4"
    write_index_clip(path, 40, 10, gop=12)  # x264's default: B-frames
    with open_video(str(path), "pyav") as r:
        assert r.reorders
    with pytest.raises(VideoError, match="has B-frames .* decode it with pyav or decord"):
        NvdecReader(str(path), device="cpu")
    write_index_clip(path, 40, 10, gop=12, bframes=0)
    with open_video(str(path), "pyav") as r:
        assert not r.reorders
    with NvdecReader(str(path), device="cpu") as nv:
        assert [decode_index(f) for f in nv.get_frames([0, 5, 39])] == [0, 5, 39]


def test_frames_equal_the_pyav_reader(fake, clip):
    from harness.video.nvdec import NvdecReader

    idx = [0, 3, 3, 11, 12, 13, 25, 39]
    with NvdecReader(clip, device="cpu") as nv, open_video(clip, "pyav") as ref:
        assert nv.meta.frame_count == ref.meta.frame_count == 40 and nv.meta.backend == "nvdec"
        on_device = nv.frames_on_device(idx)
        assert isinstance(on_device, torch.Tensor) and on_device.dtype == torch.uint8
        expected = ref.get_frames(idx)
        np.testing.assert_array_equal(on_device.numpy(), expected)
        np.testing.assert_array_equal(nv.get_frames(idx), expected)  # the reader contract: numpy on the host
        assert [decode_index(f) for f in expected] == idx
        assert nv.get_frames([]).shape == (0, 96, 128, 3)
        every = list(range(40))  # more than one decoder batch (BATCH = 32)
        np.testing.assert_array_equal(nv.frames_on_device(every).numpy(), ref.get_frames(every))
        with pytest.raises(HarnessError, match="ascending"):
            nv.frames_on_device([5, 2])


def test_bt709_stream_uses_its_matrix(fake, tmp_path):
    from harness.video.nvdec import NvdecReader

    path = tmp_path / "bt709.mp4"
    rng = np.random.default_rng(0)
    with av.open(str(path), "w") as out:
        s = out.add_stream("libx264", rate=10, options={"preset": "ultrafast"})
        s.width, s.height, s.pix_fmt = 64, 48, "yuv420p"
        s.codec_context.colorspace, s.codec_context.color_range = 1, 1
        for i in range(4):
            f = av.VideoFrame.from_ndarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8), format="rgb24")
            f = f.reformat(format="yuv420p", dst_colorspace=1, dst_color_range=1)
            f.pts = i
            out.mux(s.encode(f))
        out.mux(s.encode(None))
    with NvdecReader(str(path), device="cpu") as nv, open_video(str(path), "pyav") as ref:
        assert nv._matrix == "bt709"
        np.testing.assert_array_equal(nv.get_frames([0, 1, 2, 3]), ref.get_frames([0, 1, 2, 3]))


def test_a_decoder_with_another_index_is_refused(monkeypatch, clip):
    from harness.video.nvdec import NvdecReader

    monkeypatch.setitem(sys.modules, "PyNvVideoCodec", _fake_module(shift=1))
    with NvdecReader(clip, device="cpu") as nv:
        with pytest.raises(VideoError, match="pts .* for frame 3 .* differs from PyAV's"):
            nv.frames_on_device([3])


def test_threads_each_with_a_decoder(fake, clip):
    from harness.video.nvdec import decode_in_threads

    jobs = [(clip, [1, 2, 30]), (clip, [0, 39]), (clip, [7])]
    out = decode_in_threads(jobs, instances=2, device="cpu", to_host=True)
    assert [[decode_index(f) for f in frames] for frames in out] == [[1, 2, 30], [0, 39], [7]]
    with pytest.raises(HarnessError, match="at least 1"):
        decode_in_threads(jobs, instances=0)


def test_refusals(fake, clip, monkeypatch):
    import multiprocessing

    from harness.video.nvdec import NvdecReader

    monkeypatch.setattr(multiprocessing, "parent_process", lambda: object())
    with pytest.raises(HarnessError, match="main process"):
        NvdecReader(clip, device="cpu")


def test_missing_decoder_is_one_line(monkeypatch):
    from harness.video import reader

    monkeypatch.setitem(sys.modules, "PyNvVideoCodec", None)  # import fails as when the wheel is absent
    monkeypatch.delitem(sys.modules, "harness.video.nvdec_check", raising=False)
    reader._import_problem.cache_clear()
    try:
        with pytest.raises(HarnessError, match=r"decode backend 'nvdec' is not available \(PyNvVideoCodec does not "
                                               r"import.*gpu-decode"):
            check_backend("nvdec")
    finally:
        reader._import_problem.cache_clear()
