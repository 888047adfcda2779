"""Frame differences: PySceneDetect's content value between consecutive candidates (an encoder of kind "frame-diff").

One spec names it wherever an encoder goes (`--sampler shots:encoder=...`, `harness features --encoder ...`):

    scenedetect:content                       ContentDetector with PySceneDetect's defaults
    scenedetect:content:luma_only=true        only the luma (V) channel (ContentDetector's `luma_only`)
    scenedetect:content:weights=1/1/1/0       weights of the hue / saturation / luma / edge components
    scenedetect:content:kernel_size=5         edge dilation kernel (odd, >= 3; default from the resolution)
    scenedetect:content:downscale=auto        SceneManager's downscale before detection: auto (to about 256 pixels
                                              on the long side, PySceneDetect's default), or a factor (1: none)

Its per-video array has one value per candidate: ContentDetector's `content_val` between the candidate frame and
the previous candidate (0 for the first), the number the detector compares with its threshold. It is computed by
PySceneDetect itself (`ContentDetector.process_frame`, read back from its `StatsManager`) on the decoded grid frames
of the feature store's one decode pass, so no second decode: each frame is downscaled as `SceneManager` does
(`compute_downscale_factor` of the longer side, `cv2.resize` with its default linear interpolation) and handed over
in BGR, the channel order PySceneDetect's backends give. Thresholds and minimum shot lengths are the sampler's (they
do not change the values); the detector's parameters are key parts of the cached entries (`preprocess_id`).
"""
from __future__ import annotations

import numpy as np

from harness.errors import HarnessError
from harness.util.frames import check_frames
from harness.util.hashing import digest

PREFIX = "scenedetect:"
DETECTORS = ("content",)
INSTALL = "pip install scenedetect-headless"


def _bool(value: str, key: str, spec: str) -> bool:
    if value.lower() in ("1", "true", "yes"):
        return True
    if value.lower() in ("0", "false", "no"):
        return False
    raise HarnessError(f"encoder {spec!r}: {key} must be true or false, got {value!r}")


def _number(value: str, key: str, spec: str, cast=float):
    try:
        out = cast(value)
    except ValueError:
        raise HarnessError(f"encoder {spec!r}: {key} must be a number, got {value!r}") from None
    if not np.isfinite(out):
        raise HarnessError(f"encoder {spec!r}: {key} must be finite, got {value!r}")
    return out


def parse_spec(spec: str) -> dict:
    """'scenedetect:content[:key=value...]' -> the detector's parameters (PySceneDetect's defaults filled in)."""
    detector, *rest = spec[len(PREFIX):].split(":")
    if detector not in DETECTORS:
        raise HarnessError(f"encoder {spec!r}: unknown PySceneDetect detector {detector!r} "
                           f"(known: {', '.join(DETECTORS)})")
    params = {"weights": (1.0, 1.0, 1.0, 0.0), "luma_only": False, "kernel_size": None, "downscale": "auto"}
    for item in rest:
        key, eq, value = item.partition("=")
        if not eq or key not in params:
            raise HarnessError(f"encoder {spec!r}: expected key=value with key one of {', '.join(params)}, "
                               f"got {item!r}")
        if key == "weights":
            weights = tuple(_number(w, key, spec) for w in value.split("/"))
            if len(weights) != 4 or min(weights) < 0 or sum(weights) <= 0:
                raise HarnessError(f"encoder {spec!r}: weights are four non-negative numbers H/S/L/E, not all "
                                   f"zero, got {value!r}")
            params[key] = weights
        elif key == "luma_only":
            params[key] = _bool(value, key, spec)
        elif key == "kernel_size":
            size = _number(value, key, spec, int)
            if size < 3 or size % 2 == 0:
                raise HarnessError(f"encoder {spec!r}: kernel_size must be an odd whole number >= 3, got {value!r}")
            params[key] = size
        else:
            if value != "auto" and (_number(value, key, spec, int) < 1):
                raise HarnessError(f"encoder {spec!r}: downscale must be auto or a whole number >= 1, got {value!r}")
            params[key] = value if value == "auto" else int(value)
    if params["luma_only"]:  # ContentDetector: luma_only overrides the weights
        params["weights"] = (0.0, 0.0, 1.0, 0.0)
    return params


def _scenedetect():
    try:
        import scenedetect
    except ImportError as e:
        raise HarnessError(f"the scenedetect encoder needs PySceneDetect and OpenCV ({INSTALL}): {e}") from None
    return scenedetect


class ContentDiffScorer:
    """PySceneDetect's ContentDetector as a per-candidate scorer: `start()` gives a per-video `ContentRun`, fed the
    grid's frames chunk by chunk in time order."""

    kind = "frame-diff"

    def __init__(self, spec: str):
        self.spec = spec
        self.params = parse_spec(spec)
        version = _scenedetect().__version__
        import cv2  # its colour conversion and resizing make the values too

        self.encoder_id = f"{PREFIX}content@scenedetect-{version}+opencv-{cv2.__version__}"
        self.preprocess_id = digest({**self.params, "weights": list(self.params["weights"]), "frames": "rgb->bgr",
                                     "interpolation": "linear"})[:16]

    def start(self) -> "ContentRun":
        return ContentRun(self.params)


class ContentRun:
    """One video's pass: content values of consecutive frames, the detector's state carried across chunks."""

    def __init__(self, params: dict):
        _scenedetect()
        from scenedetect import ContentDetector, StatsManager

        self.detector = ContentDetector(weights=ContentDetector.Components(*params["weights"]),
                                        kernel_size=params["kernel_size"], min_scene_len=0)
        self.detector.stats_manager = self.stats = StatsManager()
        self.downscale = params["downscale"]
        self.factor: float | None = None
        self.position = 0

    def _prepared(self, frame: np.ndarray) -> np.ndarray:
        """A decoded RGB frame as SceneManager hands it to its detectors: downscaled, in BGR."""
        import cv2
        from scenedetect.scene_manager import Interpolation, compute_downscale_factor

        height, width = frame.shape[:2]
        if self.factor is None:  # SceneManager: one factor per video, from its frame size
            self.factor = compute_downscale_factor(max(width, height)) if self.downscale == "auto" else \
                float(self.downscale)
        if self.factor > 1.0:
            frame = cv2.resize(frame, (max(1, round(width / self.factor)), max(1, round(height / self.factor))),
                               interpolation=Interpolation.LINEAR.value)
        return np.ascontiguousarray(frame[..., ::-1])

    def update(self, frames: np.ndarray) -> np.ndarray:
        """(m, H, W, 3) uint8 RGB frames, the next m candidates -> (m,) float64 content values."""
        from scenedetect import FrameTimecode

        frames = check_frames(frames, allow_empty=True)
        out = np.zeros(len(frames), np.float64)
        for i, frame in enumerate(frames):
            timecode = FrameTimecode(self.position, fps=1.0)
            self.detector.process_frame(timecode, self._prepared(frame))
            value = self.stats.get_metrics(timecode, [self.detector.FRAME_SCORE_KEY])[0]
            out[i] = 0.0 if value is None else value  # the first frame has no previous one: no value, 0
            self.position += 1
        return out
