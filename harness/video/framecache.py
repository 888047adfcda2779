"""One decode per video, shared by the feature pass and the answer pass (issue 20).

`SharedReader` wraps a video's reader for the time the runner plans and answers that video. Every frame decoded
through it (the feature pass reads the candidate grid through it) is kept while the kept frames stay within
`max_bytes`; a later read (the answer pass: the union of the video's selections) takes what is kept and decodes
only the rest. Frames come back exactly as decoded (the same arrays), so answers do not change; `max_bytes=0`
keeps nothing (every read decodes, as before).

`counts` says what happened per video: `passes` (walks over the video: a read that decodes continues the pass of
the read before when it starts after the last frame decoded, as the feature pass's chunks do, and starts a new one
when it goes back; 1 when the answer pass found everything kept), `frames_decoded`, `frames_reused`, `frames_kept`,
`bytes_kept`, `over_limit` (frames not kept because the limit was reached) and the reader's decoding `threads`.
"""
from __future__ import annotations

import numpy as np

from harness.errors import VideoError
from harness.video.reader import VideoReader

DEFAULT_FRAME_CACHE_MB = 1024  # RunConfig.frame_cache_mb: a 1-fps grid of 10 minutes of 720p is ~1.6 GB


class SharedReader(VideoReader):
    """A reader that keeps what it decodes (up to `max_bytes`) and serves later reads from it."""

    def __init__(self, inner: VideoReader, max_bytes: int):
        self.inner, self.max_bytes = inner, int(max_bytes)
        self.backend, self.meta, self.threads = inner.backend, inner.meta, inner.threads
        self._kept: dict[int, np.ndarray] = {}
        self._bytes, self._last = 0, None  # kept bytes; the last frame decoded
        self.counts = {"threads": inner.threads, "passes": 0, "frames_decoded": 0, "frames_reused": 0,
                       "frames_kept": 0, "bytes_kept": 0,
                       "over_limit": 0}

    def _read(self, idx: np.ndarray) -> np.ndarray:
        unique = np.unique(idx)
        missing = np.asarray([i for i in unique.tolist() if i not in self._kept], np.int64)
        fresh = {}
        if missing.size:
            frames = self.inner.get_frames(missing)
            self.counts["passes"] += self._last is None or int(missing[0]) <= self._last
            self._last = int(missing[-1])
            self.counts["frames_decoded"] += int(missing.size)
            for i, frame in zip(missing.tolist(), frames):
                fresh[i] = frame
                self._keep(i, frame)
        self.counts["frames_reused"] += int(unique.size - missing.size)
        out = np.empty((idx.size, self.meta.height, self.meta.width, 3), np.uint8)
        for j, i in enumerate(idx.tolist()):
            out[j] = fresh[i] if i in fresh else self._kept[i]
        return out

    def _keep(self, index: int, frame: np.ndarray) -> None:
        if not self.max_bytes:  # sharing is off: nothing is kept, nothing is over a limit
            return
        if self._bytes + frame.nbytes > self.max_bytes:
            self.counts["over_limit"] += 1
            return
        self._kept[index] = frame
        self._bytes += frame.nbytes
        self.counts["frames_kept"] += 1
        self.counts["bytes_kept"] = self._bytes

    def seed(self, indices, frames: np.ndarray) -> None:
        """Frames another process decoded for this video (the pipelined runner's worker decodes the grid ahead of
        the feature pass), kept as if this reader had decoded them in one pass; the caller checked `indices`
        against this video's grid."""
        frames = np.asarray(frames)
        if frames.shape != (len(indices), self.meta.height, self.meta.width, 3) or frames.dtype != np.uint8:
            raise VideoError(f"frames decoded ahead for {self.meta.path} are {frames.shape} {frames.dtype}, not "
                             f"{len(indices)} of {self.meta.width}x{self.meta.height}")
        self.counts["passes"] += 1
        self.counts["frames_decoded"] += len(indices)
        self.counts["decoded_ahead"] = self.counts.get("decoded_ahead", 0) + len(indices)
        for i, frame in zip(np.asarray(indices).tolist(), frames):
            if i not in self._kept:
                self._keep(i, frame)
        if len(indices):
            self._last = int(np.max(indices))

    def kept(self, indices) -> bool:
        """Every one of these frames is kept (a read of them decodes nothing)."""
        return all(int(i) in self._kept for i in np.asarray(indices).reshape(-1).tolist())

    def _release(self) -> None:
        self._kept.clear()
        self._bytes = 0
        self.inner.close()


def sharing_summary(per_video: list[dict], max_bytes: int) -> dict:
    """The `decode` entry of the run's `features` event: decode passes per video (answers included) and frames
    reused against decoded."""
    passes = [c["passes"] for c in per_video]
    return {"frame_cache_bytes": int(max_bytes), "videos": len(per_video),
            "decode_passes": int(sum(passes)), "max_passes_per_video": max(passes, default=0),
            "videos_decoded_once": sum(1 for p in passes if p == 1),
            "reader_threads": sorted({c.get("threads") for c in per_video}, key=str),
            **{k: int(sum(c[k] for c in per_video)) for k in ("frames_decoded", "frames_reused", "over_limit")}}
