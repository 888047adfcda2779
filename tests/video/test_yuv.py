"""harness.video.yuv against PyAV's own rgb24 (swscale) on the same decoded frames: generated H.264 videos (flat
colours, gradients, noise; sizes that are not multiples of 8 or 16, odd widths), BT.601 and BT.709, limited and
full range, as yuv420p planes and as NV12, on numpy and on torch (CPU) tensors. The golden values are PyAV's
output, never this module's. Measured here: max |diff| 0 and mean |diff| 0 on every channel (exact)."""
import av
import numpy as np
import pytest

from harness.errors import HarnessError
from harness.video.yuv import coefficients, matrix_name, nv12_to_rgb, yuv420_to_rgb


def _frames(height, width, n=6, seed=0):
    """RGB frames: flat colours (primaries, greys, near-black/white), a gradient, then noise."""
    rng = np.random.default_rng(seed)
    flats = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (128, 128, 128), (3, 250, 7), (250, 2, 251)]
    ramp = np.linspace(0, 255, width, dtype=np.float32)
    for i in range(n):
        if i < 2:
            f = np.empty((height, width, 3), np.uint8)
            f[: height // 2] = flats[(2 * i) % len(flats)]
            f[height // 2:] = flats[(2 * i + 1) % len(flats)]
        elif i < 4:
            f = np.stack([np.broadcast_to(ramp, (height, width)),
                          np.broadcast_to(ramp[::-1], (height, width)),
                          np.broadcast_to(np.linspace(0, 255, height)[:, None], (height, width))], -1)
            f = f.astype(np.uint8)
        else:
            f = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        yield f


def _write(path, height, width, colorspace, color_range):
    """H.264 yuv420p tagged with the colour matrix and range (x264 writes them into the stream's VUI)."""
    with av.open(str(path), "w") as out:
        s = out.add_stream("libx264", rate=10, options={"preset": "ultrafast", "crf": "20"})
        s.width, s.height, s.pix_fmt = width, height, "yuv420p"
        s.codec_context.colorspace, s.codec_context.color_range = colorspace, color_range
        for i, rgb in enumerate(_frames(height, width)):
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(
                format="yuv420p", dst_colorspace=colorspace, dst_color_range=color_range)
            frame.pts = i
            out.mux(s.encode(frame))
        out.mux(s.encode(None))


def _planes(frame):
    """The decoded yuv420p planes without the line padding."""
    h, w = frame.height, frame.width
    out = []
    for p, (ph, pw) in zip(frame.planes, [(h, w)] + [((h + 1) // 2, (w + 1) // 2)] * 2):
        out.append(np.frombuffer(p, np.uint8).reshape(p.height, p.line_size)[:ph, :pw].copy())
    return out


CASES = [  # (height, width, AVColorSpace, AVColorRange): 1 bt709, 5 bt470bg, 6 smpte170m, 2 unspecified
    (64, 96, 5, 1), (54, 98, 1, 1), (50, 102, 6, 1), (72, 130, 1, 2), (48, 64, 2, 0), (60, 101, 5, 2)]


@pytest.mark.parametrize("height,width,colorspace,color_range", CASES)
def test_matches_pyav_rgb24_exactly(tmp_path, height, width, colorspace, color_range):
    torch = pytest.importorskip("torch")
    path = tmp_path / "v.mp4"
    if width % 2:  # x264 refuses odd sizes: write even, the odd width is a crop of the decoded planes below
        _write(path, height, width + 1, colorspace, color_range)
    else:
        _write(path, height, width, colorspace, color_range)
    diffs = []
    with av.open(str(path)) as c:
        for frame in c.decode(video=0):
            assert frame.colorspace == colorspace and frame.color_range == color_range
            y, u, v = _planes(frame)
            if width % 2:  # an odd-width frame: PyAV converts the cropped planes
                y, u, v = y[:, :width], u[:, : (width + 1) // 2], v[:, : (width + 1) // 2]
                frame = av.VideoFrame(width, height, "yuv420p")
                for plane, a in zip(frame.planes, (y, u, v)):
                    np.frombuffer(plane, np.uint8).reshape(plane.height, plane.line_size)[:, : a.shape[1]] = a
                frame.colorspace, frame.color_range = colorspace, color_range
            expected = frame.to_ndarray(format="rgb24").astype(np.int16)
            full = color_range == 2
            mine = yuv420_to_rgb(y, u, v, colorspace, full)
            nv12 = np.zeros((height * 3 // 2, 2 * u.shape[1]), np.uint8)  # an odd width: one padding column
            nv12[:height, :width], nv12[height:] = y, np.stack([u, v], -1).reshape(u.shape[0], -1)
            on_torch = nv12_to_rgb(torch.from_numpy(nv12), height, width, colorspace, full)
            assert on_torch.dtype == torch.uint8 and on_torch.shape == (height, width, 3)
            np.testing.assert_array_equal(on_torch.numpy(), mine)
            diffs.append(np.abs(mine.astype(np.int16) - expected))
    d = np.stack(diffs)
    per_channel = {"max": d.max(axis=(0, 1, 2)).tolist(), "mean": d.mean(axis=(0, 1, 2)).tolist()}
    assert per_channel == {"max": [0, 0, 0], "mean": [0.0, 0.0, 0.0]}, per_channel


def test_nv12_from_pyav_and_batches():
    """PyAV's own NV12 repacking of a frame converts to the same RGB, one frame or a batch at once."""
    rng = np.random.default_rng(1)
    h, w = 36, 52
    y, u, v = rng.integers(0, 256, (h, w), dtype=np.uint8), *rng.integers(0, 256, (2, h // 2, w // 2), dtype=np.uint8)
    frame = av.VideoFrame(w, h, "yuv420p")
    for plane, a in zip(frame.planes, (y, u, v)):
        np.frombuffer(plane, np.uint8).reshape(plane.height, plane.line_size)[:, : a.shape[1]] = a
    nv12 = frame.to_ndarray(format="nv12")
    assert nv12.shape == (h * 3 // 2, w)
    rgb = nv12_to_rgb(nv12, h, w)
    np.testing.assert_array_equal(rgb, frame.to_ndarray(format="rgb24"))
    batch = nv12_to_rgb(np.stack([nv12, nv12[::-1].copy()]), h, w)
    np.testing.assert_array_equal(batch[0], rgb)
    padded = np.zeros((2 * h * 3 // 2, w + 12), np.uint8)  # a decoder surface padded to 2h rows of luma
    padded[:h, :w], padded[2 * h: 2 * h + h // 2, :w] = nv12[:h], nv12[h:]
    np.testing.assert_array_equal(nv12_to_rgb(padded, h, w), rgb)


def test_coefficients_by_hand():
    """BT.601 limited: cy = 65536*255//219 = 76309 -> round(76309 * 2**13 / 2**16) = 9539; y_offset 16 << 3."""
    k = coefficients("bt601")
    assert k["y"] == (76309 * 8192 + 32768) >> 16 == 9539 and k["y_offset"] == 128
    assert k["vr"] == (104597 * 8192 + 32768) >> 16 and k["ug"] == (-25675 * 8192 + 32768) >> 16
    assert coefficients("bt709", full_range=True)["y"] == 8192
    # Y = 128, U = V = 128 on BT.601 limited: (1024 - 128) * 9539 >> 16 = 130 (the float formula gives 130.4)
    grey = yuv420_to_rgb(np.full((2, 2), 128, np.uint8), np.full((1, 1), 128, np.uint8),
                         np.full((1, 1), 128, np.uint8))
    assert grey.tolist() == [[[130] * 3] * 2] * 2


def test_bad_input_is_one_line():
    with pytest.raises(HarnessError, match="odd height"):
        yuv420_to_rgb(np.zeros((3, 4), np.uint8), np.zeros((2, 2), np.uint8), np.zeros((2, 2), np.uint8))
    with pytest.raises(HarnessError, match="do not fit"):
        yuv420_to_rgb(np.zeros((4, 4), np.uint8), np.zeros((1, 2), np.uint8), np.zeros((2, 2), np.uint8))
    with pytest.raises(HarnessError, match="unknown colorspace"):
        matrix_name("bt999")
    assert matrix_name(6) == matrix_name("smpte170m") == matrix_name(None) == "bt601"
