"""Training data for the TSPO trainer: where questions, candidate frames and ground-truth masks come from.

Two sources give the trainer the same thing, an `Episode` per (question, step): the candidates' CLIP features
(from the feature store), the question's text feature, each candidate's time, a ground-truth mask where one
exists, how many frames to select, and a way to decode the frames the rollouts chose.

* `TaskSource`: any harness task, e.g. the offline `needle` train split (`needle_source`). Candidates are the
  task video's grid (default 1 fps); the mask marks candidates inside the sample's evidence intervals, so the
  temporal reward applies wherever a task knows its evidence.
* `JsonlSource`: the TSPO-10K JSONL format (docs/reference/tspo.md §4.3) with a video root. `general` rows use
  the training video rule (§2.1: the 1 fps grid when it has 50-128 frames, else 128 uniform frames); `specific`
  rows build the video needle-in-a-haystack of §4.4: R ~ U{1..4} clips of 50 frames drawn from the target video
  plus 12 clips of 50 frames from other videos, in random order, mask True on the target's frames.

Bugs of the official loader that are fixed here (§8.9): the mask always has one entry per candidate; a distractor
is never the target video; a video that cannot be decoded raises (never 128 silent black frames); the CLIP query
is the text before the first option line (not a split at any "\nA", which also matches "\nAfter ..."), and a row
without options is an error naming its line. All randomness comes from the `rng` the trainer passes, derived from
(seed, position in the data order), so an episode is the same whichever process builds it, and after a resume.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from harness.errors import HarnessError
from harness.fileio import json_objects
from harness.features import FeatureStore, cosine_scores
from harness.grid import make_grid, parse_grid_rule
from harness.records import CandidateGrid, Sample

# tspo.md §4.3-4.4 and the official utils: the training video rule and the haystack's clip sizes
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


@dataclass(frozen=True)
class TrainItem:
    """One training question. `kind`: "specific" (haystack, temporal reward), "general" (no temporal reward) or
    "task" (a harness task sample: temporal reward wherever it has evidence)."""

    id: str
    sample: Sample  # video, question, options and answer (what the accuracy reward scores against)
    query: str  # the text CLIP scores candidates against
    kind: str
    prompt: str | None = None  # the backbone's question text; None: the task builds it per prompt style
    line: int | None = None  # JSONL line number, for messages


@dataclass
class Episode:
    """What one question gives the trainer at one step. Positions index the candidates 0..T-1."""

    item: TrainItem
    features: np.ndarray  # (T, D) float32 raw CLIP image features
    text: np.ndarray  # (D,) CLIP text feature of item.query
    scores: np.ndarray  # (T,) cosine of each image feature with the text feature (the agent's clip_scores)
    timestamps: np.ndarray  # (T,) seconds (a haystack is a synthetic 1 fps timeline)
    mask: np.ndarray | None  # (T,) bool, True inside the ground truth; None: no temporal reward
    k: int  # frames each rollout selects
    decode: Callable[[Sequence[int]], np.ndarray]  # ascending positions -> (n, H, W, 3) uint8 frames
    evidence: tuple = ()  # ground-truth intervals in seconds (for plots)
    closers: list = field(default_factory=list)

    def close(self) -> None:
        for close in self.closers:
            close()
        self.closers.clear()


@dataclass
class FeatureEnv:
    """The feature store, the CLIP encoder spec and the decoder the sources use."""

    store: FeatureStore
    encoder: str
    decode_backend: str = "decord"

    @property
    def scorer(self):
        scorer = self.store.encoder(self.encoder)
        if scorer.kind != "features":
            raise HarnessError(f"the TSPO agent needs CLIP image and text features; encoder {self.encoder!r} gives "
                               f"only image-text matching scores")
        return scorer


def mask_intervals(mask, timestamps, step: float = 1.0) -> tuple[tuple[float, float], ...]:
    """Runs of True in `mask` as [start, end) seconds (end = the last member's time + step)."""
    mask = np.asarray(mask, bool)
    out, start = [], None
    for i, m in enumerate(mask):
        if m and start is None:
            start = i
        if start is not None and (not m or i == len(mask) - 1):
            last = i if m else i - 1
            out.append((float(timestamps[start]), float(timestamps[last]) + step))
            start = None
    return tuple(out)


def evidence_mask(timestamps, evidence) -> np.ndarray | None:
    """True for candidates inside any [start, end) interval; None when there are no intervals."""
    if not evidence:
        return None
    t = np.asarray(timestamps, np.float64)
    return np.any([(t >= a) & (t < b) for a, b in evidence], axis=0)


def tspo_train_grid(frame_count: int, fps: float, max_frames: int, min_frames: int = TRAIN_MIN_FRAMES
                    ) -> CandidateGrid:
    """The official training `load_video` rule (tspo.md §2.1): every round(fps)-th frame when that gives
    min_frames..max_frames frames, else max_frames frames at int(linspace(0, N-1, max_frames))."""
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


class _Source:
    name = "source"

    def items(self) -> list[TrainItem]:
        raise NotImplementedError

    def config(self) -> dict:
        return {}

    def prompt(self, item: TrainItem, style: str) -> str:
        return item.prompt

    def score(self, item: TrainItem, text: str) -> bool:
        from harness.scoring import score_strict
        return bool(score_strict(item.sample, text).correct)

    def episode(self, item: TrainItem, env: FeatureEnv, rng: np.random.Generator, frames: int,
                general_frames: int) -> Episode:
        raise NotImplementedError


# ---------------------------------------------------------------------------------------------------------------
# Harness tasks (needle train split)


class TaskSource(_Source):
    """Questions of a harness task; candidates on its videos' `grid`; mask from the samples' evidence."""

    def __init__(self, task, grid: str = "1fps", limit: int | None = None):
        self.task, self.grid, self.limit = task, parse_grid_rule(grid), limit
        self.name = f"task:{task.name}"
        self._items = None

    def config(self) -> dict:
        return {"source": self.name, "task": self.task.config(), "grid": self.grid, "limit": self.limit}

    def items(self) -> list[TrainItem]:
        if self._items is None:
            samples = self.task.samples()
            if self.limit is not None:
                samples = samples[:self.limit]
            if not samples:
                raise HarnessError(f"task {self.task.name!r} has no samples to train on")
            self._items = [TrainItem(s.id, s, self.task.query(s), "task") for s in samples]
        return self._items

    def prompt(self, item: TrainItem, style: str) -> str:
        return self.task.prompt(item.sample, style)

    def score(self, item: TrainItem, text: str) -> bool:
        return bool(self.task.score(item.sample, text).correct)

    def episode(self, item, env, rng, frames, general_frames) -> Episode:
        from harness.runner import decode_selection
        from harness.video import open_video

        scorer = env.scorer
        reader = open_video(item.sample.video, env.decode_backend)
        try:
            grid = make_grid(reader.meta.frame_count, reader.meta.fps, self.grid)
            if len(grid) == 0:
                raise HarnessError(f"{item.sample.video}: empty candidate grid ({self.grid})")
            feats = env.store.image_features(scorer, item.sample.video, grid, reader)
            text = env.store.text_feature(scorer, item.query)
        except BaseException:
            reader.close()
            raise
        times = np.asarray(grid.timestamps, np.float64)
        indices = np.asarray(grid.indices)
        return Episode(item, np.asarray(feats, np.float32), np.asarray(text, np.float32).reshape(-1),
                       cosine_scores(feats, text), times, evidence_mask(times, item.sample.evidence),
                       min(frames, len(grid)), lambda positions: decode_selection(reader, indices[list(positions)]),
                       tuple(item.sample.evidence), [reader.close])


def needle_source(videos: int = 50, questions_per_video: int = 4, seed: int = 0, grid: str = "1fps",
                  limit: int | None = None, **task_args) -> TaskSource:
    """The offline `needle` train split (disjoint from the test split the default run evaluates on)."""
    from harness.registry import TASKS

    task = TASKS.create("needle", split="train", videos=videos, questions_per_video=questions_per_video, seed=seed,
                        **task_args)
    return TaskSource(task, grid, limit)


# ---------------------------------------------------------------------------------------------------------------
# TSPO-10K JSONL


def parse_question(text: str, where: str) -> tuple[str, list[str], str]:
    """(question for CLIP, option texts, backbone prompt) of an `original_question`.

    Options are the lines "A. text" or "(A) text", consecutive letters from A; the question is everything before
    the first of them. "<image>\\n" and the two boilerplate sentences are removed (tspo.md §4.3-4.4)."""
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


class JsonlSource(_Source):
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
        from harness.video import open_video

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
        from harness.runner import decode_selection

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
        """tspo.md §4.4 with the §8.9 fixes: R clips of the target (each `clip_frames` frames drawn without
        replacement, in time order; the whole video when it is shorter) and `distractors` clips of other videos
        (`clip_frames` frames each, the load_video rule with max = min = clip_frames, resized to the target's size),
        in a random order."""
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
                from harness.runner import decode_selection
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
    from harness.video import iter_frames

    parts = []
    for _, frames in iter_frames(reader, grid.indices, store.chunk_size):
        store.stats["frames_decoded"] += len(frames)
        parts.append(scorer.image_features(_resized(frames, size)))
    array = np.concatenate(parts) if parts else np.zeros((0, scorer.dim), np.float32)
    store.cache.save(key, array, dict(store._manifest("image", scorer, video, grid), resized=list(size)))
    store.stats["image_computed"] += 1
    return array


def make_source(data: str, task_args: dict | None = None, video_root=None, grid: str = "1fps",
                limit: int | None = None) -> _Source:
    """`needle` (the offline train split), `task:NAME` (any registered task; `task_args` are its options), or a
    TSPO-10K `.jsonl` file with `video_root`."""
    task_args = dict(task_args or {})
    if data == "needle":
        if task_args.pop("split", "train") != "train":
            raise HarnessError("TSPO training on needle uses its train split (the test split is for evaluation)")
        return needle_source(grid=grid, limit=limit, **task_args)
    if data.startswith("task:"):
        from harness.registry import TASKS

        return TaskSource(TASKS.create(data[len("task:"):], **task_args), grid, limit)
    if data.endswith(".jsonl") or Path(data).expanduser().is_file():
        if task_args:
            raise HarnessError(f"task options {sorted(task_args)} do not apply to a JSONL file")
        return JsonlSource(data, video_root, limit)
    raise HarnessError(f"training data {data!r}: expected 'needle', 'task:NAME' or a TSPO-10K .jsonl file")
