"""The questions a needle video asks, and their balance over a split.

A video's events follow a layout (its needle objects in time order, labelled by first appearance); each layout
supports some question kinds (`layout_questions`), and `make_question` turns a kind into a `Question` with its
options, answer position and evidence. `Balancer` picks every video's layout and question kinds, a block of videos
at a time, so that question types, count answers, events per video and appearance phrasings stay balanced;
`letter_schedule` spreads answer letters evenly within each question type.
"""
from __future__ import annotations

import functools
import itertools

import numpy as np

from harness.errors import HarnessError
from tasks.needle.spec import COLOURS, LETTERS, QUESTION_TYPES, SHAPES, SPLITS, Event, Question

# layouts: the needle objects of a video's events in time order, labelled by first appearance
LAYOUTS = ((0,), (0, 0), (0, 1), (0, 0, 0), (0, 0, 1), (0, 1, 0), (0, 1, 1), (0, 1, 2))


def layout_questions(layout: tuple[int, ...]) -> list[tuple]:
    """The distinct question kinds a layout supports: (type, ...) tuples naming objects by label."""
    objs = sorted(set(layout))
    qs = []
    for o in objs:
        qs += [("appearance", "colour", o), ("appearance", "shape", o), ("appearance", "which", o)]
    qs += [("order", a, b) for a, b in itertools.combinations(objs, 2)]
    qs += [("count", o) for o in objs]
    return qs


@functools.lru_cache(maxsize=None)
def _candidates(n_questions: int):
    """Every (layout, question set) a video can have, with what it adds to the balance tallies: question types
    (3), count answers 1..3 (3), appearance phrasings (3) and events per video (3); plus how many questions repeat
    a type already in the same video."""
    rows, deltas, repeats = [], [], []
    for layout in LAYOUTS:
        for sub in itertools.combinations(layout_questions(layout), n_questions):
            d = np.zeros(12)
            for q in sub:
                d[QUESTION_TYPES.index(q[0])] += 1
                if q[0] == "count":
                    d[3 + layout.count(q[1]) - 1] += 1
                if q[0] == "appearance":
                    d[6 + ("colour", "shape", "which").index(q[1])] += 1
            d[9 + len(layout) - 1] += 1
            rows.append((layout, sub))
            deltas.append(d)
            repeats.append(n_questions - np.count_nonzero(d[:3]))
    if not rows:
        raise HarnessError(f"questions_per_video={n_questions} is more than a needle video can ask")
    return rows, np.array(deltas), np.array(repeats, np.float64)


class Balancer:
    """Plans the layouts and question sets of blocks of BLOCK videos at a time so that, over the split, question
    types stay balanced (first), then count answers and events per video, then appearance phrasings.

    Exact balance of everything is impossible with at most three events (a count of 3 needs a video whose only
    object is the counted one, which leaves only appearance questions to ask), so the plan trades by weight; for 4
    questions a video it settles on equal question types and count answers 1/2/3 at about 2:1:1.
    """

    BLOCK = 3  # videos planned together: BLOCK * questions_per_video is a multiple of the three question types
    # (tally columns, weight, target shares): question types, count answers 1/2/3, events per video 1/2/3
    # question types come first: only the block plans that keep them closest to equal are considered
    TYPES = ((slice(0, 3), 1.0, (1 / 3, 1 / 3, 1 / 3)),)
    PRIMARY = ((slice(3, 6), 1.0, (0.5, 0.27, 0.23)), (slice(9, 12), 0.3, (0.03, 0.12, 0.85)))
    SECONDARY = ((slice(6, 9), 1.0, (1 / 3, 1 / 3, 1 / 3)),)  # appearance phrasings
    REPEAT = 0.2  # per question that repeats a type within its video

    def __init__(self, n_questions: int):
        self.rows, deltas, self.repeats = _candidates(n_questions)
        self.deltas = deltas
        key = np.concatenate([deltas[:, :6], deltas[:, 9:]], axis=1)
        self.keys, self.key_of_row = np.unique(key, axis=0, return_inverse=True)
        self.key_of_row = self.key_of_row.reshape(-1)
        self.key_delta = np.zeros((len(self.keys), 12))
        self.key_delta[:, :6], self.key_delta[:, 9:] = self.keys[:, :6], self.keys[:, 6:]
        self.key_events = self.keys[:, 6:].argmax(axis=1) + 1
        self.key_repeats = n_questions - np.count_nonzero(self.keys[:, :3], axis=1)
        self.tally = np.zeros(12)

    @staticmethod
    def _spread(x: np.ndarray, groups) -> np.ndarray:
        cost = np.zeros(x.shape[:-1])
        for sl, w, share in groups:
            g = x[..., sl]
            cost = cost + w * ((g - g.sum(axis=-1, keepdims=True) * np.asarray(share)) ** 2).sum(axis=-1)
        return cost

    def plan_block(self, rng, feasible: list[set[int]]) -> list[tuple[tuple[int, ...], tuple[tuple, ...]]]:
        """One (layout, question kinds) per video; feasible[j] = the event counts that fit video j."""
        options = [np.nonzero(np.isin(self.key_events, list(f)))[0] for f in feasible]
        if any(len(o) == 0 for o in options):
            raise HarnessError("no needle layout fits a video this short")
        n = len(options)

        def along(j, x):  # x (len(options[j]), ...) broadcast along axis j of the block's grid of choices
            return x.reshape((1,) * j + (len(x),) + (1,) * (n - 1 - j) + x.shape[1:])

        deltas = [along(j, self.key_delta[o]) for j, o in enumerate(options)]
        prefixes, running = [], self.tally
        for d in deltas:
            running = running + d
            prefixes.append(running)
        total = prefixes.pop()
        type_cost = self._spread(total, self.TYPES)
        cost = (self._spread(total, self.PRIMARY)
                + self.REPEAT * sum(along(j, self.key_repeats[o]) for j, o in enumerate(options))
                + 0.01 * rng.random(type_cost.shape))
        cost[type_cost > type_cost.min() + 1e-6] = np.inf
        # a split cut inside a block keeps its types as even as it can: prefer blocks whose prefixes are even too
        for p in prefixes:
            cost = cost + 0.5 * self._spread(p, self.TYPES)
        choice = np.unravel_index(int(np.argmin(cost)), cost.shape)
        plan = []
        for j, i in enumerate(choice):
            rows = np.nonzero(self.key_of_row == options[j][i])[0]
            new = self.tally + self.deltas[rows]
            c = self._spread(new, self.SECONDARY) + self.REPEAT * self.repeats[rows]
            r = int(rows[np.argmin(c + 0.01 * rng.random(len(rows)))])
            self.tally = self.tally + self.deltas[r]
            plan.append(self.rows[r])
        return plan


def letter_schedule(split: str, seed: int, qtype: str):
    """Answer positions of one question type: consecutive blocks of four use each letter once, in seeded order."""
    block = 0
    while True:
        rng = np.random.default_rng([int(seed), SPLITS[split], 7, QUESTION_TYPES.index(qtype), block])
        yield from (int(p) for p in rng.permutation(len(LETTERS)))
        block += 1


def _place(correct: str, others: list[str], pos: int) -> tuple[tuple[str, ...], int]:
    opts = list(others)
    opts.insert(pos, correct)
    return tuple(opts), pos


def make_question(kind: tuple, objects: list[tuple[str, str]], events: list[Event], pos: int, rng) -> Question:
    """The question of `kind` (one of `layout_questions`) about `objects` ((shape, colour), labelled by first
    appearance) and their `events`, with its correct option at index `pos`; the other options are drawn with `rng`."""
    present = set(objects)
    by_obj = {o: [e for e in events if e.obj == o] for o in objects}

    def name(o):
        return f"the {o[1]} {o[0]}"

    def absent(k):
        pool = [(s, c) for s in SHAPES for c in COLOURS if (s, c) not in present]
        return [pool[i] for i in rng.choice(len(pool), k, replace=False)]

    qtype = kind[0]
    if qtype == "appearance":
        o = objects[kind[2]]
        ev = tuple((e.start, e.end) for e in by_obj[o])
        if kind[1] == "colour":
            others = [c for c in COLOURS if c != o[1]]
            opts, ans = _place(o[1], [others[i] for i in rng.choice(len(others), 3, replace=False)], pos)
            return Question(qtype, f"What colour is the {o[0]} that appears in the video?", opts, ans, ev)
        if kind[1] == "shape":
            others = [s for s in SHAPES if s != o[0]]
            opts, ans = _place(o[0], [others[i] for i in rng.choice(len(others), 3, replace=False)], pos)
            return Question(qtype, f"What shape is the {o[1]} object that appears in the video?", opts, ans, ev)
        opts, ans = _place(name(o), [name(a) for a in absent(3)], pos)
        return Question(qtype, "Which of these objects appears in the video?", opts, ans, ev)
    if qtype == "order":
        a, b = objects[kind[1]], objects[kind[2]]
        first_a, first_b = by_obj[a][0], by_obj[b][0]
        first, second = (a, b) if first_a.start < first_b.start else (b, a)
        others = [name(second)] + [name(x) for x in absent(2)]
        others = [others[i] for i in rng.permutation(3)]
        opts, ans = _place(name(first), others, pos)
        ev = tuple(sorted([(first_a.start, first_a.end), (first_b.start, first_b.end)]))
        return Question(qtype, "Which of these objects appears first in the video?", opts, ans, ev)
    if qtype == "count":
        o = objects[kind[1]]
        n = len(by_obj[o])
        others = [str(k) for k in range(1, 5) if k != n]  # ascending; the correct count goes to `pos`
        opts, ans = _place(str(n), others, pos)
        ev = tuple((e.start, e.end) for e in by_obj[o])
        return Question(qtype, f"How many times does the {o[1]} {o[0]} appear in the video?", opts, ans, ev)
    raise ValueError(f"unknown question kind {kind}")