"""TSPO-10K as a training source: its JSONL rows, and the needle-in-a-haystack episodes of the official trainer.

Rows have the fields `video` (relative to a video root), `original_question`, `solution` and `type` (the dataset
Canhui99/TSPO-10K; read by src/open_tspo/tspo.py of the official repository Hui-design/TSPO). `general` rows use
the official training video rule (`load_video` in src/open_tspo/trainer/utils.py: the 1 fps grid when it has 50-128
frames, else 128 uniform frames); `specific` rows build the video needle-in-a-haystack of the same file
(`repeat_videos`, `sample_real_frames`, `shuffle_clips`): R ~ U{1..4} clips of 50 frames drawn from the target video
plus 12 clips of 50 frames from other videos, in random order, mask True on the target's frames.

Bugs of the official loader that are fixed here: the mask always has one entry per candidate (officially, a
`general` row's mask has the frame height's length); a distractor is never the target video; a video that cannot
be decoded raises (never 128 silent black frames); the CLIP query is the text before the first option line (not a
split at any "\nA", which also matches "\nAfter ..."), and a row without options is an error naming its line.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from harness.errors import HarnessError
from harness.features.store import cosine_scores
from harness.records import CandidateGrid, Sample
from harness.train.episode import Episode, Source, TrainItem, mask_intervals
from harness.util.fileio import json_objects
from harness.video.grid import make_grid

# the official training video rule and the haystack's clip sizes (src/open_tspo/trainer/utils.py)
TRAIN_MAX_FRAMES, TRAIN_MIN_FRAMES = 128, 50
HAYSTACK_CLIP_FRAMES = 50  # frames per clip (the target's clips and each distractor's)
HAYSTACK_TRUE_CLIPS = (1, 4)  # R, inclusive
HAYSTACK_DISTRACTORS = 12
BOILERPLATE = ("Please provide your answer by stating the letter followed by the full option.",
               "Please respond with only the letter of the correct answer.")
ANSWER_SUFFIX = "Please answer with the option's letter from the given choices directly."
KINDS = ("specific", "general")
_OPTION = re.compile(r"^(?:([A-Z])\.|\(([A-Z])\))\s*(.*)$")
_SOLUTION = re.compile(r"<answer>\s*(.*?)\s*</answer>", re.S)


def tspo_train_grid(frame_count: int, fps: float, max_frames: int, min_frames: int = TRAIN_MIN_FRAMES
                    ) -> CandidateGrid:
    """The official training `load_video` rule (src/open_tspo/trainer/utils.py): every round(fps)-th frame when
    that gives min_frames..max_frames frames, else max_frames frames at int(linspace(0, N-1, max_frames))."""
    if frame_count < 1:
        raise HarnessError("video has no frames")
    onefps = make_grid(frame_count, fps, "1fps")
    if min_frames <= len(onefps) <= max_frames:
        indices = np.asarray(onefps.indices)
    else:
        indices = np.linspace(0, frame_count - 1, max_frames).astype(int)
    return CandidateGrid(indices=indices, timestamps=indices / float(fps), fps=float(fps),
                         frame_count=int(frame_count), rule=f"tspo-train:{max_frames}:{min_frames}")


def _resized(frames: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Frames resized to (H, W) with PIL bilinear, as the official haystack does with distractor frames."""
    from PIL import Image

    if frames.shape[1:3] == tuple(size):
        return frames
    h, w = size
    return np.stack([np.asarray(Image.fromarray(f).resize((w, h), Image.BILINEAR)) for f in frames])


def parse_question(text: str, where: str) -> tuple[str, list[str], str]:
    """(question for CLIP, option texts, backbone prompt) of an `original_question`.

    Options are the lines "A. text" or "(A) text", consecutive letters from A; the question is everything before
    the first of them. "<image>\\n" and the two boilerplate sentences are removed (as the official trainer's
    `compute_loss` does)."""
    clean = str(text).replace("<image>\n", "").replace("<image>", "")
    for sentence in BOILERPLATE:
        clean = clean.replace(sentence, "")
    clean = clean.strip()
    lines = clean.split("\n")
    first = next((i for i, line in enumerate(lines) if _OPTION.match(line.strip())), None)
    if first is None:
        raise HarnessError(f"{where}: original_question has no option lines ('A. ...' or '(A) ...')")
    question = "\n".join(lines[:first]).replace("Question: ", "").strip()
    options = []
    for line in lines[first:]:
        m = _OPTION.match(line.strip())
        if not m:
            if line.strip():  # a continuation of the previous option's text
                options[-1] = options[-1] + " " + line.strip()
            continue
        letter = m.group(1) or m.group(2)
        if letter != chr(ord("A") + len(options)):
            raise HarnessError(f"{where}: option {letter} out of order (expected {chr(ord('A') + len(options))})")
        options.append(m.group(3).strip())
    if len(options) < 2:
        raise HarnessError(f"{where}: original_question has {len(options)} option(s); need at least 2")
    if not question:
        raise HarnessError(f"{where}: original_question has no question before its options")
    return question, options, clean + "\n" + ANSWER_SUFFIX


def parse_solution(solution, n_options: int, where: str) -> int:
    """The answer index of `<answer>x</answer>` (a letter, any case)."""
    m = _SOLUTION.search(str(solution))
    letter = (m.group(1) if m else str(solution)).strip().strip("().").upper()
    if len(letter) != 1 or not "A" <= letter < chr(ord("A") + n_options):
        raise HarnessError(f"{where}: solution {solution!r} is not one of the {n_options} option letters")
    return ord(letter) - ord("A")


def read_tspo_jsonl(path, video_root, limit: int | None = None, check_videos: bool = True) -> list[TrainItem]:
    """Items of a TSPO-10K JSONL file (fields `video`, `original_question`, `solution`, `type`); video paths are
    relative to `video_root`. Every problem is a one-line HarnessError naming the line."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise HarnessError(f"TSPO training file {str(path)!r} not found")
    root = Path(video_root).expanduser() if video_root else None
    if root is not None and not root.is_dir():
        raise HarnessError(f"video root {str(root)!r} is not a folder")
    items = []
    with open(path, encoding="utf-8") as f:
        for number, row in json_objects(f, path.name):
            where = f"{path.name}:{number}"
            missing = [k for k in ("video", "original_question", "solution", "type") if k not in row]
            if missing:
                raise HarnessError(f"{where}: missing field(s) {', '.join(missing)}")
            kind = str(row["type"])
            if kind not in KINDS:
                raise HarnessError(f"{where}: type {kind!r} must be 'specific' or 'general'")
            question, options, prompt = parse_question(row["original_question"], where)
            answer = parse_solution(row["solution"], len(options), where)
            video = Path(str(row["video"]))
            video = str((root / video) if root is not None and not video.is_absolute() else video)
            sample = Sample(id=str(row.get("id", f"line{number}")), video=video, question=question,
                            options=tuple(options), answer=answer, metadata={"line": number, "type": kind})
            items.append(TrainItem(sample.id, sample, question, kind, prompt, number))
            if limit is not None and len(items) >= limit:
                break
    if not items:
        raise HarnessError(f"{path}: no training rows")
    ids = [it.id for it in items]
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise HarnessError(f"{path}: id {dup!r} appears more than once")
    if check_videos:
        absent = [it for it in items if not Path(it.sample.video).is_file()]
        if absent:
            raise HarnessError(f"{len(absent)} of {len(items)} training videos are missing under "
                               f"{root or 'the working folder'}, first: {absent[0].sample.video} "
                               f"({path.name}:{absent[0].line})")
    return items


class JsonlSource(Source):
    """TSPO-10K rows; `specific` rows become needle-in-a-haystack episodes with distractors from the whole file
    (as the official trainer does), never from the target's own video."""

    def __init__(self, path, video_root=None, limit: int | None = None, max_frames: int = TRAIN_MAX_FRAMES,
                 min_frames: int = TRAIN_MIN_FRAMES, clip_frames: int = HAYSTACK_CLIP_FRAMES,
                 true_clips: tuple[int, int] = HAYSTACK_TRUE_CLIPS, distractors: int = HAYSTACK_DISTRACTORS):
        self.path, self.video_root, self.limit = Path(path).expanduser(), video_root, limit
        self.max_frames, self.min_frames, self.clip_frames = int(max_frames), int(min_frames), int(clip_frames)
        self.true_clips, self.distractors = (int(true_clips[0]), int(true_clips[1])), int(distractors)
        if not 1 <= self.true_clips[0] <= self.true_clips[1] or self.distractors < 0 or self.clip_frames < 1:
            raise HarnessError(f"bad haystack settings: true clips {true_clips}, distractors {distractors}, "
                               f"clip frames {clip_frames}")
        self.name = f"jsonl:{self.path.name}"
        self._items = None
        self._pool = None
        self._unreadable: set[str] = set()

    def config(self) -> dict:
        return {"source": "tspo-jsonl", "path": str(self.path.resolve()), "video_root": str(self.video_root),
                "limit": self.limit, "max_frames": self.max_frames, "min_frames": self.min_frames,
                "clip_frames": self.clip_frames, "true_clips": list(self.true_clips),
                "distractors": self.distractors}

    def items(self) -> list[TrainItem]:
        if self._items is None:
            self._items = read_tspo_jsonl(self.path, self.video_root, self.limit)
        return self._items

    def pool(self) -> list[str]:
        """Distractor videos: every distinct video of the file (resolved paths)."""
        if self._pool is None:
            everything = read_tspo_jsonl(self.path, self.video_root, None, check_videos=False) \
                if self.limit is not None else self.items()
            self._pool = sorted({str(Path(it.sample.video).resolve()) for it in everything
                                 if Path(it.sample.video).is_file()})
        return self._pool

    def episode(self, item, env, rng, frames, general_frames) -> Episode:
        if item.kind == "specific":
            return self._haystack(item, env, rng, frames)
        return self._general(item, env, general_frames)

    def _open(self, env, video: str, max_frames: int, min_frames: int):
        from harness.video.reader import open_video

        reader = open_video(video, env.decode_backend)
        return reader, tspo_train_grid(reader.meta.frame_count, reader.meta.fps, max_frames, min_frames)

    def _distractors(self, env, others: list[str], rng, readers: dict) -> list[str]:
        """`distractors` videos from `others`: distinct while the pool allows (the official code draws lines with
        replacement), in a random order. An unreadable video is reported and passed over; the draws depend only
        on the seed and on which files are unreadable, so every process builds the same haystack."""
        from harness.errors import VideoError

        def readable(video) -> bool:
            if video in readers:
                return True
            if video in self._unreadable:
                return False
            try:
                readers[video] = self._open(env, video, self.clip_frames, self.clip_frames)
                return True
            except VideoError as e:
                self._unreadable.add(video)
                _warn_unreadable(video, e)
                return False

        chosen = []
        for i in rng.permutation(len(others)):
            if len(chosen) == self.distractors:
                break
            if readable(others[int(i)]):
                chosen.append(others[int(i)])
        if self.distractors and not chosen:
            raise HarnessError(f"{self.path.name}: no readable video to build a haystack from")
        while len(chosen) < self.distractors:  # a pool smaller than `distractors`: repeat videos
            chosen.append(chosen[int(rng.integers(len(chosen)))])
        return chosen

    def _general(self, item, env, k) -> Episode:
        from harness.video.reader import decode_selection

        scorer = env.scorer
        reader, grid = self._open(env, item.sample.video, self.max_frames, self.min_frames)
        try:
            feats = env.store.image_features(scorer, item.sample.video, grid, reader)
            text = env.store.text_feature(scorer, item.query)
        except BaseException:
            reader.close()
            raise
        indices = np.asarray(grid.indices)
        return Episode(item, np.asarray(feats, np.float32), np.asarray(text, np.float32).reshape(-1),
                       cosine_scores(feats, text), np.asarray(grid.timestamps, np.float64), None,
                       min(k, len(grid)), lambda positions: decode_selection(reader, indices[list(positions)]),
                       (), [reader.close])

    def _haystack(self, item, env, rng, k) -> Episode:
        """The official haystack with the fixes of the module docstring: R clips of the target (each `clip_frames`
        frames drawn without replacement, in time order; the whole video when it is shorter) and `distractors` clips
        of other videos (`clip_frames` frames each, the load_video rule with max = min = clip_frames, resized to the
        target's size), in a random order."""
        scorer = env.scorer
        target = str(Path(item.sample.video).resolve())
        others = [v for v in self.pool() if v != target]
        if self.distractors and not others:
            raise HarnessError(f"{self.path.name}:{item.line}: no other video to build the haystack from")
        readers = {}

        def close_all():
            for r, _ in readers.values():
                r.close()
            readers.clear()

        try:
            readers[target] = self._open(env, target, self.max_frames, self.min_frames)
            reader, grid = readers[target]
            size = (reader.meta.height, reader.meta.width)
            target_feats = env.store.image_features(scorer, target, grid, reader)
            n = len(grid)
            n_true = int(rng.integers(self.true_clips[0], self.true_clips[1] + 1))
            clips = []  # (video, grid positions)
            for _ in range(n_true):
                pos = np.arange(n) if n <= self.clip_frames else np.sort(rng.choice(n, self.clip_frames,
                                                                                    replace=False))
                clips.append((target, pos))
            features = {target: target_feats}
            for video in self._distractors(env, others, rng, readers):
                if video not in features:
                    r, g = readers[video]
                    features[video] = _resized_features(env, scorer, video, g, r, size)
                clips.append((video, np.arange(len(readers[video][1]))))
            order = rng.permutation(len(clips))
            clips = [clips[i] for i in order]
            parts = [features[v][pos] for v, pos in clips]
            source = np.concatenate([np.full(len(pos), i) for i, (_, pos) in enumerate(clips)])
            local = np.concatenate([pos for _, pos in clips])
            mask = np.concatenate([np.full(len(pos), v == target) for v, pos in clips])
            text = np.asarray(env.store.text_feature(scorer, item.query), np.float32).reshape(-1)
        except BaseException:
            close_all()
            raise
        feats = np.concatenate(parts).astype(np.float32)
        times = np.arange(len(feats), dtype=np.float64)  # the haystack is a new 1 fps video

        def decode(positions):
            out = np.empty((len(positions), *size, 3), np.uint8)
            positions = np.asarray(positions, np.int64)
            for c in np.unique(source[positions]):
                video, _ = clips[int(c)]
                r, g = readers[video]
                rows = np.flatnonzero(source[positions] == c)
                native = np.asarray(g.indices)[local[positions[rows]]]
                order_ = np.argsort(native, kind="stable")  # readers take ascending indices
                from harness.video.reader import decode_selection
                got = decode_selection(r, native[order_])
                out[rows[order_]] = _resized(got, size)
            return out

        return Episode(item, feats, text, cosine_scores(feats, text), times, mask, min(k, len(feats)), decode,
                       mask_intervals(mask, times), [close_all])


def _warn_unreadable(video: str, error: Exception) -> None:
    import warnings

    warnings.warn(f"haystack distractor {video} is unreadable ({' '.join(str(error).split())}); another video "
                  f"is drawn in its place", stacklevel=3)


def _resized_features(env, scorer, video, grid, reader, size) -> np.ndarray:
    """CLIP features of a video's grid frames after resizing them to `size` (the haystack's distractors), from the
    feature store: the plain entry when no resize is needed, else an entry keyed by the size as well."""
    if (reader.meta.height, reader.meta.width) == tuple(size):
        return env.store.image_features(scorer, video, grid, reader)
    store = env.store
    key = store.cache.key(kind="image-resized", size=list(size), resample="PIL-bilinear",
                          **store._video_parts(scorer, video, grid))
    cached = store._load(key)
    if cached is not None:
        store.stats["image_cached"] += 1
        return cached
    from harness.video.reader import iter_frames

    parts = []
    for _, frames in iter_frames(reader, grid.indices, store.chunk_size):
        store.stats["frames_decoded"] += len(frames)
        parts.append(scorer.image_features(_resized(frames, size)))
    array = np.concatenate(parts) if parts else np.zeros((0, scorer.dim), np.float32)
    store.cache.save(key, array, dict(store._manifest("image", scorer, video, grid), resized=list(size)))
    store.stats["image_computed"] += 1
    return array
