"""YUV 4:2:0 (planar or NV12) to RGB24 with FFmpeg's arithmetic, on numpy arrays or torch tensors (any device).

PyAV's `frame.to_ndarray(format="rgb24")` (and decord, through libswscale too) converts a yuv420p frame of even
height with swscale's unscaled converter. On x86 with SSSE3 that is `ff_yuv_420_rgb24_ssse3`
(libswscale/x86/yuv_2_rgb.asm) with the coefficients of `ff_yuv2rgb_c_init_tables` (libswscale/yuv2rgb.c):

* chroma is not interpolated: each U/V sample serves its 2x2 block of pixels (nearest);
* every value works in signed 16 bits: `Y8 = (Y << 3) - y_offset`, `U8 = (U << 3) - 1024`, `V8 = (V << 3) - 1024`,
  each product is `pmulhw` (the high 16 bits of the 32-bit product: `(a * b) >> 16`, rounding towards minus
  infinity), `R = Y' + V8*vr`, `G = Y' + (U8*ug + V8*vg)`, `B = Y' + U8*ub`, then clamped to 0..255 (`packuswb`);
* the coefficients are `roundToInt16(c * 2**13)` (`(x + 2**15) >> 16`, so round half up) of swscale's 16.16
  table `ff_yuv2rgb_coeffs[colorspace]` = {crv, cbu, cgu, cgv}; limited range: `cy = (65536*255) // 219`,
  `y_offset = 16 << 3`; full range: `cy = 65536`, chroma coefficients `* 224 // 255`, `y_offset = 0`.

The colour matrix and range come from the stream (PyAV hands swscale the frame's own colorspace and range):
unspecified colorspace is BT.601, unspecified range is limited ("mpeg"). Odd heights are refused: swscale takes its
scaling path for them (interpolated chroma), which this module does not reproduce. This is written from the FFmpeg source,
not copied; tests/video/test_yuv.py compares it with PyAV's rgb24 on generated videos.
"""
from __future__ import annotations

from harness.errors import HarnessError

# swscale's ff_yuv2rgb_coeffs {crv, cbu, cgu, cgv} (16.16) by matrix name; FFmpeg's index in the comment
_COEFFS = {
    "bt601": (104597, 132201, 25675, 53279),  # 2 unspecified, 5 bt470bg, 6 smpte170m, and the default
    "bt709": (117489, 138438, 13975, 34925),  # 1
    "fcc": (104448, 132798, 24759, 53109),  # 4
    "smpte240m": (117579, 136230, 16907, 35559),  # 7
    "bt2020": (110013, 140363, 12277, 42626),  # 9, 10
}
# FFmpeg's AVColorSpace numbers (what PyAV's `colorspace` attributes hold) -> matrix name
_AVCOL_SPC = {0: "bt601", 1: "bt709", 2: "bt601", 3: "bt601", 4: "fcc", 5: "bt601", 6: "bt601", 7: "smpte240m",
              9: "bt2020", 10: "bt2020"}


def matrix_name(colorspace) -> str:
    """The conversion matrix swscale uses for a stream's colorspace (an AVColorSpace number or a name)."""
    if isinstance(colorspace, str):
        name = colorspace.lower().replace("-", "").replace("_", "").replace(".", "")
        name = {"smpte170m": "bt601", "bt470bg": "bt601", "unspecified": "bt601", "bt2020ncl": "bt2020",
                "bt2020cl": "bt2020"}.get(name, name)
        if name in _COEFFS:
            return name
        raise HarnessError(f"unknown colorspace {colorspace!r}: one of {', '.join(_COEFFS)}")
    if colorspace is None:
        return "bt601"
    if int(colorspace) not in _AVCOL_SPC:
        raise HarnessError(f"colorspace {colorspace} (AVColorSpace) has no YUV->RGB matrix in swscale "
                           f"(YCgCo, ICtCp, ...): one of {sorted(_AVCOL_SPC)}")
    return _AVCOL_SPC[int(colorspace)]


def _round16(x: int) -> int:
    """swscale's roundToInt16: (x + 2**15) >> 16, saturated to int16."""
    r = (x + (1 << 15)) >> 16
    return -0x8000 if r < -0x7FFF else min(r, 0x7FFF)


def coefficients(colorspace="bt601", full_range: bool = False) -> dict:
    """The 16-bit coefficients of swscale's SIMD yuv420p->rgb24 path: y_offset, y, vr, ub, ug, vg."""
    crv, cbu, cgu, cgv = _COEFFS[matrix_name(colorspace)]
    cgu, cgv = -cgu, -cgv
    if full_range:
        cy, oy = 1 << 16, 0
        # C's integer division truncates towards zero (Python's // floors): it matters for the negative ones
        crv, cbu, cgu, cgv = (_cdiv(c * 224, 255) for c in (crv, cbu, cgu, cgv))
    else:
        cy, oy = _cdiv((1 << 16) * 255, 219), 16 << 16
    return {"y_offset": _round16(oy * 8), "y": _round16(cy << 13), "vr": _round16(crv << 13),
            "ub": _round16(cbu << 13), "ug": _round16(cgu << 13), "vg": _round16(cgv << 13)}


def _cdiv(a: int, b: int) -> int:
    """C's integer division (truncates towards zero)."""
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b > 0) else -q


def _is_torch(x) -> bool:
    return type(x).__module__.startswith("torch")


def yuv420_to_rgb(y, u, v, colorspace="bt601", full_range: bool = False):
    """(..., H, W) luma and (..., ceil(H/2), ceil(W/2)) chroma planes (uint8, numpy or torch) -> (..., H, W, 3)
    uint8 RGB, on the input's device."""
    k = coefficients(colorspace, full_range)
    torch_in = _is_torch(y)
    if torch_in:
        import torch

        i32 = torch.int32

        def up(p):  # each chroma sample over its 2x2 block
            return p.repeat_interleave(2, dim=-2).repeat_interleave(2, dim=-1)
        stack = torch.stack
    else:
        import numpy as np

        i32 = np.int32

        def up(p):
            return p.repeat(2, axis=-2).repeat(2, axis=-1)
        stack = np.stack
    h, w = y.shape[-2:]
    if h % 2:  # swscale converts odd heights with its scaling path (interpolated chroma), not reproduced here
        raise HarnessError(f"a {w}x{h} frame has an odd height: the exact conversion covers even heights only")
    if u.shape != v.shape or u.shape[-2:] != ((h + 1) // 2, (w + 1) // 2):
        raise HarnessError(f"chroma planes of shape {tuple(u.shape)} and {tuple(v.shape)} do not fit a 4:2:0 "
                           f"frame of {w}x{h}")
    yy = ((y.astype(i32) if not torch_in else y.to(i32)) << 3) - k["y_offset"]
    uu = ((up(u)[..., :h, :w].astype(i32) if not torch_in else up(u)[..., :h, :w].to(i32)) << 3) - 1024
    vv = ((up(v)[..., :h, :w].astype(i32) if not torch_in else up(v)[..., :h, :w].to(i32)) << 3) - 1024
    luma = (yy * k["y"]) >> 16  # pmulhw: the high half of the 32-bit product
    r = luma + ((vv * k["vr"]) >> 16)
    g = luma + (((uu * k["ug"]) >> 16) + ((vv * k["vg"]) >> 16))
    b = luma + ((uu * k["ub"]) >> 16)
    rgb = stack([r, g, b], -1)
    if torch_in:
        return rgb.clamp_(0, 255).to(torch.uint8)
    return np.clip(rgb, 0, 255).astype(np.uint8)


def nv12_to_rgb(nv12, height: int, width: int, colorspace="bt601", full_range: bool = False):
    """NV12 frames (..., rows, cols) uint8 (luma rows, then interleaved UV rows; the decoder's surface may be padded
    beyond height x width) -> (..., height, width, 3) uint8 RGB."""
    rows, cols = nv12.shape[-2:]
    ch, cw = (height + 1) // 2, (width + 1) // 2
    luma_rows = rows * 2 // 3  # the surface holds luma_rows rows of luma, then luma_rows / 2 of chroma
    if cols < 2 * cw or luma_rows < height or rows < luma_rows + ch:
        raise HarnessError(f"an NV12 surface of {cols}x{rows} cannot hold a {width}x{height} frame")
    y = nv12[..., :height, :width]
    uv = nv12[..., luma_rows:luma_rows + ch, :2 * cw]
    return yuv420_to_rgb(y, uv[..., 0::2], uv[..., 1::2], colorspace, full_range)
