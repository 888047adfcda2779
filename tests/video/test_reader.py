"""Decoder backends against real H.264 clips whose frames show their own index."""
from fractions import Fraction

import numpy as np
import pytest

from harness.errors import HarnessError, UnknownNameError, VideoError
from harness.util.synth import as_rate, decode_index, index_frame, write_index_clip, write_video
from harness.video.reader import available_backends, check_backend, iter_frames, open_video, read_frames

BACKENDS = available_backends()
N = 300
# name -> (fps as written, gop): a short GOP, an NTSC rate with a long GOP, x264's own keyframe choice, Matroska
CLIPS = {
    "cfr30_gop12.mp4": (30, 12),
    "ntsc_gop150.mp4": (Fraction(30000, 1001), 150),
    "pal25_default.mp4": (25, None),
    "cfr30.mkv": (30, None),
}
SPARSE = [0, 1, 11, 12, 13, 149, 150, 151, 237, 298, 299]


@pytest.fixture(scope="session")
def clips(tmp_path_factory):
    root = tmp_path_factory.mktemp("clips")
    for name, (fps, gop) in CLIPS.items():
        write_index_clip(root / name, N, fps, gop=gop)
    return root


@pytest.fixture(scope="session")
def decord_frames(clips):
    """Every frame of every clip as decord decodes it: the reference for the other backends."""
    return {name: read_frames(clips / name, range(N), "decord") for name in CLIPS}


def test_decord_and_pyav_are_installed():
    assert BACKENDS[:2] == ["decord", "pyav"]


# --- synth ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("i", [0, 1, 2, 1000, 12345, 2 ** 16 - 1])
def test_index_frame_roundtrip(i):
    assert decode_index(index_frame(i)) == i
    assert decode_index(index_frame(i, 80, 80)) == i


def test_index_frame_rejects_small_frames_and_big_indices():
    with pytest.raises(ValueError):
        index_frame(0, 64, 64)
    with pytest.raises(ValueError):
        index_frame(2 ** 16)


def test_ntsc_rates_are_written_exactly():
    assert as_rate(29.97) == Fraction(30000, 1001)
    assert as_rate(23.976) == Fraction(24000, 1001)
    assert as_rate(30) == 30 and as_rate(1) == 1 and as_rate(2.5) == Fraction(5, 2)


def test_write_video_is_atomic(tmp_path):
    def frames():
        yield index_frame(0)
        raise RuntimeError("source failed")

    with pytest.raises(RuntimeError):
        write_video(tmp_path / "broken.mp4", frames(), 30)
    assert list(tmp_path.iterdir()) == []


def test_write_video_rejects_odd_sizes(tmp_path):
    with pytest.raises(ValueError, match="even"):
        write_video(tmp_path / "odd.mp4", [np.zeros((95, 128, 3), np.uint8)], 30)
    assert list(tmp_path.iterdir()) == []


# --- every backend against the clips ----------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", CLIPS)
def test_metadata_as_written(clips, name, backend):
    fps = float(CLIPS[name][0])
    with open_video(clips / name, backend) as r:
        m = r.meta
    assert (m.frame_count, m.width, m.height, m.backend) == (N, 128, 96, backend)
    assert m.fps == pytest.approx(fps, rel=1e-9)
    assert m.duration == pytest.approx(N / fps, rel=1e-9)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", CLIPS)
def test_frames_are_the_requested_ones(clips, decord_frames, name, backend):
    with open_video(clips / name, backend) as r:
        frames = r.get_frames(SPARSE)
        assert frames.shape == (len(SPARSE), 96, 128, 3) and frames.dtype == np.uint8
        assert [decode_index(f) for f in frames] == SPARSE
        assert np.array_equal(frames, decord_frames[name][SPARSE])
        # a second, earlier read needs a backward seek
        assert [decode_index(f) for f in r.get_frames([2, 3, 200])] == [2, 3, 200]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", CLIPS)
def test_all_frames_identical_to_decord(clips, decord_frames, name, backend):
    frames = read_frames(clips / name, range(N), backend, chunk_size=64)
    assert [decode_index(f) for f in frames] == list(range(N))
    assert np.array_equal(frames, decord_frames[name])


@pytest.mark.parametrize("backend", BACKENDS)
def test_random_sorted_reads(clips, decord_frames, backend):
    rng = np.random.default_rng(0)
    name = "ntsc_gop150.mp4"
    with open_video(clips / name, backend) as r:
        for _ in range(10):
            idx = np.sort(rng.choice(N, size=rng.integers(1, 20), replace=False))
            assert np.array_equal(r.get_frames(idx), decord_frames[name][idx])


@pytest.mark.parametrize("backend", BACKENDS)
def test_repeats_and_empty_requests(clips, backend):
    with open_video(clips / "cfr30_gop12.mp4", backend) as r:
        assert [decode_index(f) for f in r.get_frames([5, 5, 6])] == [5, 5, 6]
        assert r.get_frames([]).shape == (0, 96, 128, 3)


@pytest.mark.parametrize("backend", BACKENDS)
def test_iter_frames_chunks(clips, backend):
    idx = list(range(0, N, 7))
    with open_video(clips / "cfr30_gop12.mp4", backend) as r:
        chunks = list(iter_frames(r, idx, chunk_size=8))
        assert all(len(ci) == len(cf) <= 8 for ci, cf in chunks)
        assert np.concatenate([ci for ci, _ in chunks]).tolist() == idx
        assert np.array_equal(np.concatenate([cf for _, cf in chunks]), r.get_frames(idx))


# --- errors --------------------------------------------------------------------------------------------------


def _video_error(path, backend) -> str:
    with pytest.raises(VideoError) as e:
        open_video(path, backend)
    message = str(e.value)
    assert str(path) in message and "\n" not in message and "Traceback" not in message
    return message


@pytest.mark.parametrize("backend", BACKENDS)
def test_missing_directory_and_empty_files(tmp_path, backend):
    assert "not found" in _video_error(tmp_path / "nope.mp4", backend)
    assert "directory" in _video_error(tmp_path, backend)
    (tmp_path / "empty.mp4").write_bytes(b"")
    assert "empty" in _video_error(tmp_path / "empty.mp4", backend)


@pytest.mark.parametrize("backend", BACKENDS)
def test_corrupt_files(tmp_path, clips, backend):
    noise = tmp_path / "noise.mp4"
    noise.write_bytes(np.random.default_rng(0).integers(0, 256, 20_000, dtype=np.uint8).tobytes())
    _video_error(noise, backend)
    data = (clips / "cfr30_gop12.mp4").read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[:len(data) // 2])  # the index (moov) is written last, so it is lost
    _video_error(cut, backend)


@pytest.mark.parametrize("backend", BACKENDS)
def test_truncated_faststart_file(tmp_path, backend):
    """With the index (moov) first, a cut file still opens in ffmpeg, promising frames it no longer holds."""
    import av

    path = tmp_path / "faststart.mp4"
    with av.open(str(path), "w", options={"movflags": "faststart"}) as out:
        stream = out.add_stream("libx264", rate=30)
        stream.width, stream.height, stream.pix_fmt = 128, 96, "yuv420p"
        for i in range(N):
            frame = av.VideoFrame.from_ndarray(index_frame(i), format="rgb24")
            frame.pts = i
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])
    _video_error(path, backend)


def test_unknown_backend_suggests_close_name(clips):
    with pytest.raises(UnknownNameError, match="did you mean pyav"):
        open_video(clips / "cfr30.mkv", "pyvav")
    with pytest.raises(UnknownNameError):
        check_backend("ffmpeg")


@pytest.mark.skipif("torchcodec" in BACKENDS, reason="torchcodec is installed")
def test_missing_backend_says_what_to_install():
    with pytest.raises(HarnessError, match="pip install torchcodec"):
        check_backend("torchcodec")


@pytest.mark.parametrize("backend", BACKENDS)
def test_bad_indices(clips, backend):
    with open_video(clips / "cfr30_gop12.mp4", backend) as r:
        with pytest.raises(HarnessError, match="out of range"):
            r.get_frames([0, N])
        with pytest.raises(HarnessError, match="out of range"):
            r.get_frames([-1])
        with pytest.raises(HarnessError, match="ascending"):
            r.get_frames([5, 3])
        with pytest.raises(HarnessError, match="ascending"):
            next(iter_frames(r, [9, 1]))
    with pytest.raises(HarnessError, match="closed"):
        r.get_frames([0])


# --- colour and efficiency -----------------------------------------------------------------------------------


def test_colour_frames_identical_across_backends(tmp_path):
    """Index clips are grey; colour content also checks that every backend converts YUV to RGB the same way."""
    rng = np.random.default_rng(0)
    # random colours in 16x16 blocks: saturated chroma that survives 4:2:0 subsampling
    frames = [rng.integers(0, 256, (6, 8, 3), dtype=np.uint8).repeat(16, 0).repeat(16, 1) for _ in range(24)]
    path = tmp_path / "colour.mp4"
    write_video(path, frames, 23.976, gop=8)
    reference = read_frames(path, range(24), "decord")
    assert np.abs(reference.astype(int) - np.stack(frames)).mean() < 8  # it is the content we wrote
    for backend in BACKENDS[1:]:
        assert np.array_equal(read_frames(path, [0, 7, 8, 15, 23], backend), reference[[0, 7, 8, 15, 23]])


def _count_decoded(reader):
    """Wrap the PyAV reader's decoder so the test sees how many frames it decodes."""
    counter = {"frames": 0, "seeks": 0}
    seek = reader._seek

    def counting_seek(position):
        seek(position)
        counter["seeks"] += 1
        frames = reader._frames

        def counted():
            for frame in frames:
                counter["frames"] += 1
                yield frame
        reader._frames = counted()
    reader._seek = counting_seek
    return counter


@pytest.mark.skipif("pyav" not in BACKENDS, reason="PyAV is not installed")
def test_pyav_seeks_to_far_targets_and_streams_near_ones(clips):
    with open_video(clips / "cfr30_gop12.mp4", "pyav") as r:
        counter = _count_decoded(r)
        r.get_frames([0, 150, 299])  # keyframes at 0, 144, 288: about 1 + 7 + 12 frames, not 300
        assert counter["seeks"] == 3 and counter["frames"] < 40
    with open_video(clips / "cfr30_gop12.mp4", "pyav") as r:
        counter = _count_decoded(r)
        for _ in iter_frames(r, range(N), chunk_size=32):
            pass
        assert counter == {"frames": N, "seeks": 1}  # chunks continue the same decode


@pytest.mark.parametrize("ext", ["mp4", "mkv"])
def test_variable_frame_rate(tmp_path, ext):
    """Frame i is the i-th frame in presentation order, whatever the gaps between timestamps."""
    import av

    path = tmp_path / f"vfr.{ext}"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=30)
        stream.width, stream.height, stream.pix_fmt = 128, 96, "yuv420p"
        stream.codec_context.time_base = Fraction(1, 90000)
        pts = 0
        for i in range(120):
            frame = av.VideoFrame.from_ndarray(index_frame(i), format="rgb24")
            frame.pts, frame.time_base = pts, Fraction(1, 90000)
            pts += 3000 if (i // 20) % 2 else 6000  # 20 frames at 15 fps, 20 at 30 fps, ...
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    idx = [0, 19, 20, 21, 58, 77, 100, 119]
    reference = read_frames(path, idx, BACKENDS[0])
    assert [decode_index(f) for f in reference] == idx
    for backend in BACKENDS[1:]:
        with open_video(path, backend) as r:
            assert r.meta.frame_count == 120
            assert np.array_equal(r.get_frames(idx), reference)


def test_library_errors_keep_their_reason():
    """A library's error becomes one line: decord's log prefix dropped, and a first line that only names where the
    error arose (as PyNvVideoCodec's NvDecoder errors begin) joined with the line saying what went wrong."""
    from harness.video.reader import _library_error

    nvdec = RuntimeError("HandlePictureDisplay : \n  m_api.cuvidMapVideoFrame(m_hDecoder) returned error 700\n at line 612")
    assert _library_error(nvdec) == "HandlePictureDisplay : m_api.cuvidMapVideoFrame(m_hDecoder) returned error 700"
    decord = RuntimeError("[09:41:02] /src/video_reader.cc:83: ERROR opening: x.mp4, Invalid data\nStack trace:")
    assert _library_error(decord) == "ERROR opening: x.mp4, Invalid data"
    assert _library_error(RuntimeError("HandlePictureDisplay :")) == "HandlePictureDisplay :"
    assert _library_error(RuntimeError("")) == "RuntimeError"
