"""harness.integrations.answerer in the main environment (no toolkit): a question brought from outside is answered
with the frames and text `harness run` gives it, what was chosen is recorded, and bad options are one line."""
import json

import pytest

from harness.config import RunConfig
from harness.errors import HarnessError
from harness.integrations.answerer import AskedQuestion, Answerer, split_args, unquote
from harness.run.runner import Run

SMOKE = {"videos": 4, "duration": 12.0}


def test_answers_and_frames_equal_harness_run(tmp_path):
    cfg = RunConfig(task="smoke", task_args=SMOKE, backbone="colour-probe", samplers=["uniform"], frames=4,
                    out=str(tmp_path / "runs"), cache_dir=str(tmp_path / "cache"))
    run = Run(cfg, progress=False)
    [run_dir] = run.execute()
    rows = {r["sample_id"]: r for r in map(json.loads, (run_dir / "predictions.jsonl").read_text().splitlines())}
    samples = run.task.samples()
    answerer = Answerer(backbone="colour-probe", sampler="uniform", frames=4, cache_dir=str(tmp_path / "cache2"),
                        selections=str(tmp_path / "sel.jsonl"))
    for s in samples:
        prompt = run.task.prompt(s, answerer.backbone.prompt_style)
        text = answerer.answer(AskedQuestion(s.id, s.video, prompt, run.task.query(s)))
        assert text == rows[s.id]["prediction"]["raw_text"]
    records = [json.loads(x) for x in (tmp_path / "sel.jsonl").read_text().splitlines()]
    assert [r["id"] for r in records] == [s.id for s in samples]
    for r in records:
        assert r["selection"]["frame_indices"] == rows[r["id"]]["selection"]["frame_indices"]
        assert r["prompt_sha256"] == rows[r["id"]]["prompt_sha256"] and r["sampler"] == "uniform"


def test_an_unreadable_video_is_an_empty_answer_recorded_as_an_error(tmp_path, capsys):
    answerer = Answerer(backbone="colour-probe", sampler="uniform", cache_dir=str(tmp_path / "c"),
                        selections=str(tmp_path / "sel.jsonl"))
    assert answerer.answer(AskedQuestion("q1", str(tmp_path / "missing.mp4"), "p", "q")) == ""
    record = json.loads((tmp_path / "sel.jsonl").read_text())
    assert "video not found" in record["error"] and answerer.errors == 1
    assert "q1" in capsys.readouterr().err


@pytest.mark.parametrize("kwargs,words", [
    ({"frames": "eight"}, "frames must be an integer"),
    ({"dtype": "float33"}, "did you mean float32"),
    ({"sampler": "uniform;aks"}, "one sampler spec"),
    ({"sampler": "unifrm"}, "unifrm"),
    ({"backbone_args": "max_pixels"}, "backbone_args: expected key=value"),
    ({"backbone": "none"}, "answers nothing"),
])
def test_bad_options_are_one_line(tmp_path, kwargs, words):
    base = {"backbone": "colour-probe", "cache_dir": str(tmp_path / "c"), "selections": ""}
    with pytest.raises(HarnessError, match=words):
        Answerer(**{**base, **kwargs})


def test_quoted_values_keep_their_commas():
    assert unquote('"aks:encoder=mini-clip,depth=3"') == "aks:encoder=mini-clip,depth=3"
    assert unquote("'x'") == "x" and unquote("x") == "x" and unquote(8) == 8
    assert split_args('"pixels=lmms-eval,max_new_tokens=4"', "backbone_args") == {"pixels": "lmms-eval",
                                                                                  "max_new_tokens": 4}
    assert split_args("", "backbone_args") == {}
