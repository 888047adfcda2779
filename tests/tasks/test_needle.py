"""The `needle` task: deterministic specs, balanced questions, answers that follow from the events, real videos."""
import collections
import json
import re

import numpy as np
import pytest

from harness.registry import TASKS
from harness.video.reader import open_video
from tasks.needle import (COLOURS, EDGE, EVENT_GAP, EVENT_SECONDS, FPS, SHAPES, SIZE, NeedleTask, VideoSpec,
                          frame_objects, make_samples, make_specs, render_frame, saturation, shape_mask)

SHORT = {"min_duration": 60.0, "max_duration": 75.0}


@pytest.fixture(scope="module")
def default_specs():
    """The default test set's specs (50 videos, 2-10 min); no videos are written."""
    return make_specs("test", 50, 0)


@pytest.fixture(scope="module")
def default_samples(default_specs):
    return [s for spec in default_specs for s in make_samples(spec, "/videos")]


def _object(option: str) -> tuple[str, str]:
    m = re.fullmatch(r"the (\w+) (\w+)", option)
    assert m and m[1] in COLOURS and m[2] in SHAPES, option
    return m[2], m[1]


def test_specs_and_frames_are_deterministic_and_splits_differ():
    a, b = make_specs("test", 4, 0, **SHORT), make_specs("test", 4, 0, **SHORT)
    assert a == b
    assert [s for sp in a for s in make_samples(sp)] == [s for sp in b for s in make_samples(sp)]
    for t in (0.0, 7.25, a[0].events[0].start + 1.0, a[0].duration - 0.25):
        assert np.array_equal(render_frame(a[0], t), render_frame(b[0], t))
    assert make_specs("test", 2, 0, **SHORT) == a[:2]  # fewer videos are a prefix of more
    train = make_specs("train", 4, 0, **SHORT)
    assert not {s.seed for s in train} & {s.seed for s in a}
    assert [s.events for s in train] != [s.events for s in a]
    assert [s.events for s in make_specs("test", 4, 1, **SHORT)] != [s.events for s in a]
    assert [VideoSpec.from_json(json.loads(json.dumps(s.to_json()))) for s in a] == a


def test_event_placement(default_specs):
    for spec in default_specs:
        assert 120 <= spec.duration <= 600 and spec.n_frames == spec.duration * FPS
        assert 1 <= len(spec.events) <= 3
        prev_end = None
        for e in spec.events:
            assert EVENT_SECONDS[0] <= e.end - e.start <= EVENT_SECONDS[1]
            assert EDGE <= e.start and e.end <= spec.duration - EDGE
            assert (e.start * FPS).is_integer() and (e.end * FPS).is_integer()
            assert prev_end is None or e.start - prev_end >= EVENT_GAP
            prev_end = e.end
            assert 24 <= e.size <= 36
            for t in (e.start, e.end - 1 / FPS):  # the object stays inside the frame the whole time
                top, left, bottom, right = e.box(t)
                assert 0 <= top and 0 <= left and bottom <= SIZE and right <= SIZE
        objects = {e.obj for e in spec.events}  # needle objects of one video differ in shape and in colour
        assert len({o[0] for o in objects}) == len({o[1] for o in objects}) == len(objects)
        assert spec.scenes[0].start == 0 and spec.scenes[-1].end == spec.duration
        assert all(x.end == y.start for x, y in zip(spec.scenes, spec.scenes[1:]))
        assert frame_objects(spec, spec.events[0].start) == [spec.events[0]]
        assert frame_objects(spec, spec.events[0].end) == []


def test_question_types_and_answer_letters_are_balanced(default_samples):
    assert len(default_samples) == 200
    types = collections.Counter(s.categories["question_type"] for s in default_samples)
    assert set(types) == {"appearance", "order", "count"} and max(types.values()) - min(types.values()) <= 1
    letters = collections.Counter(s.answer_letter for s in default_samples)
    assert set(letters) == set("ABCD") and max(letters.values()) - min(letters.values()) <= 2
    for t in types:
        per_type = collections.Counter(s.answer_letter for s in default_samples if s.categories["question_type"] == t)
        assert set(per_type) == set("ABCD") and max(per_type.values()) - min(per_type.values()) <= 1, (t, per_type)
    counts = collections.Counter(s.options[s.answer] for s in default_samples
                                 if s.categories["question_type"] == "count")
    assert set(counts) == {"1", "2", "3"} and min(counts.values()) >= 0.15 * sum(counts.values()), counts
    assert len({s.id for s in default_samples}) == 200


def test_answers_follow_from_the_events(default_specs, default_samples):
    by_video = {spec.video_id: spec for spec in default_specs}
    for s in default_samples:
        spec = by_video[s.metadata["video_id"]]
        assert re.fullmatch(r"needle-test-v\d{3}-q\d", s.id) and s.id.startswith(spec.video_id + "-q")
        assert s.video == f"/videos/{spec.video_id}.mp4" and s.duration == spec.duration
        assert s.categories == {"question_type": s.categories["question_type"]}
        assert s.metadata["seed"] == spec.seed
        events = s.metadata["events"]
        assert events == [{"shape": e.shape, "colour": e.colour, "start": e.start, "end": e.end} for e in spec.events]
        intervals = {(e["start"], e["end"]) for e in events}
        assert len(s.options) == 4 and len(set(s.options)) == 4 and 0 <= s.answer < 4 and s.evidence
        for a, b in s.evidence:  # evidence: whole events, inside the video
            assert 0 <= a < b <= s.duration and (a, b) in intervals
        present = {(e["shape"], e["colour"]) for e in events}
        qtype, q, answer = s.categories["question_type"], s.question, s.options[s.answer]
        if qtype == "count":
            m = re.fullmatch(r"How many times does the (\w+) (\w+) appear in the video\?", q)
            obj = (m[2], m[1])
            n = sum((e["shape"], e["colour"]) == obj for e in events)
            assert answer == str(n) and sorted(s.options) == ["1", "2", "3", "4"]
            assert len(s.evidence) == n
        elif qtype == "order":
            assert q == "Which of these objects appears first in the video?"
            objs = [_object(o) for o in s.options]
            real = [o for o in objs if o in present]
            assert len(real) == 2
            first = {o: min(e["start"] for e in events if (e["shape"], e["colour"]) == o) for o in real}
            assert _object(answer) == min(real, key=first.get)
            assert {a for a, _ in s.evidence} == set(first.values())
        else:
            if m := re.fullmatch(r"What colour is the (\w+) that appears in the video\?", q):
                assert [c for sh, c in present if sh == m[1]] == [answer] and set(s.options) <= set(COLOURS)
                obj = (m[1], answer)
            elif m := re.fullmatch(r"What shape is the (\w+) object that appears in the video\?", q):
                assert [sh for sh, c in present if c == m[1]] == [answer] and set(s.options) <= set(SHAPES)
                obj = (answer, m[1])
            else:
                assert q == "Which of these objects appears in the video?"
                assert [o for o in map(_object, s.options) if o in present] == [_object(answer)]
                obj = _object(answer)
            assert set(s.evidence) == {(e["start"], e["end"]) for e in events if (e["shape"], e["colour"]) == obj}


def test_needles_are_saturated_and_everything_else_is_not():
    for rgb in COLOURS.values():
        assert saturation(np.array(rgb, np.uint8)) >= 0.8
    for spec in make_specs("test", 6, 3, **SHORT):
        times = np.arange(0, spec.duration, 1.75)
        for t in times:
            frame = render_frame(spec, t)
            sat = saturation(frame)
            needle = np.zeros(sat.shape, bool)
            for e in frame_objects(spec, t):
                top, left, bottom, right = e.box(t)
                needle[top:bottom, left:right] |= shape_mask(e.shape, e.size)
                assert (sat[needle] >= 0.8).all()
            assert sat[~needle].max() < 0.25, (spec.video_id, t)


def test_written_videos_decode_with_the_needle_visible(tmp_path):
    task = TASKS.create("needle", videos=2, root=str(tmp_path / "needle"), **SHORT)
    assert isinstance(task, NeedleTask) and task.stratify_key == "question_type"
    assert task.category_keys == ("question_type",)
    samples = task.samples()
    specs = task.specs()
    assert len(samples) == 8 and [s.metadata["video_id"] for s in samples[::4]] == [sp.video_id for sp in specs]
    manifest = json.loads((tmp_path / "needle" / "manifest-n2.json").read_text())
    assert [VideoSpec.from_json(d) for d in manifest["specs"]] == specs
    for spec in specs:
        path = tmp_path / "needle" / f"{spec.video_id}.mp4"
        assert samples[4 * spec.index].video == str(path.resolve())
        with open_video(str(path)) as reader:
            assert reader.meta.frame_count == spec.n_frames and reader.meta.fps == FPS
            assert (reader.meta.width, reader.meta.height) == (SIZE, SIZE)
            for e in spec.events:
                i = int((e.start + e.end) / 2 * FPS)
                frame = reader.get_frames([i])[0].astype(np.float32)
                top, left, bottom, right = e.box(i / FPS)
                mask = shape_mask(e.shape, e.size)
                core = mask & np.roll(mask, 2, 0) & np.roll(mask, -2, 0) & np.roll(mask, 2, 1) & np.roll(mask, -2, 1)
                pixels = frame[top:bottom, left:right][core]
                assert np.abs(pixels.mean(axis=0) - COLOURS[e.colour]).max() < 25, (e, pixels.mean(axis=0))
                assert np.median(saturation(pixels)) > 0.6
            # away from the events the decoded frames have no saturated patch (H.264 blurs chroma: some margin)
            quiet = [i for i in range(0, spec.n_frames, 8)
                     if all(abs(i / FPS - t) > 1.0 for e in spec.events for t in (e.start, e.end))
                     and not frame_objects(spec, i / FPS)]
            assert len(quiet) > 20
            assert np.quantile(saturation(reader.get_frames(quiet)), 0.999) < 0.3
    mtimes = {p: p.stat().st_mtime_ns for p in (tmp_path / "needle").glob("*.mp4")}
    assert task.samples() == samples  # reused, not rewritten
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "needle").glob("*.mp4")} == mtimes
    prompt = task.prompt(samples[0])
    assert prompt.startswith(samples[0].question) and "\nA. " in prompt and "\nD. " in prompt


def test_the_data_root_is_a_location_not_an_identity(tmp_path):
    a, b = (NeedleTask(videos=2, root=str(tmp_path / name), **SHORT) for name in ("a", "b"))
    assert a.config()["root"] == str(tmp_path / "a") and b.config()["root"] == str(tmp_path / "b")  # still recorded
    assert a.identity() == b.identity() and "root" not in a.identity()
    assert NeedleTask(videos=3, root=str(tmp_path / "a"), **SHORT).identity() != a.identity()
