"""`harness baseline save` and `harness regress` on run directories written by hand in the run-store layout.

The McNemar p-values the accuracy mode must reproduce are computed here by hand from the binomial: with b questions
the baseline got right and the run wrong, c the other way, n = b + c, p = min(1, 2 * sum_{i <= min(b,c)} C(n,i) / 2^n).
"""
import json
import math
import xml.etree.ElementTree as ET

import pytest

from harness.cli.app import main
from harness.errors import HarnessError
from harness.report.baseline import load, save
from harness.report.regress import regress
from harness.report.regress_output import render
from harness.report.stats import holm

N = 40  # questions of every hand-built run; gold letter A throughout
FRAMES = [0, 30, 60, 90]


def write_run(root, name, right, frames=None, sampler_config=None, limit=None, answers=None):
    """A finished run of N questions (`right`: the set of question numbers answered A, the others B); `frames`:
    {question: frame indices} overriding FRAMES; `answers`: {question: letter}; `limit`: a --limit subset of the
    questions 0..limit-1."""
    cfg = sampler_config if sampler_config is not None else {"t1": 0.8}
    identity = {"task": {"name": "needle", "config": {"split": "test"}}, "backbone": {"name": "bb", "config": {}},
                "sampler": {"name": "aks", "config": cfg, "config_hash": json.dumps(cfg, sort_keys=True)},
                "frames": 4, "grid": "1fps", "short_grid": "all", "limit": limit, "dtype": "float32"}
    questions = range(limit if limit else N)
    config = {"identity": identity, "identity_hash": "x", "prompt_style": "default", "sampler_spec": "aks",
              "n_samples": len(questions), "subset": {"limit": limit, "stratify": "question_type", "available": N,
                                                       "selected": len(questions)}}
    run = root / name
    run.mkdir(parents=True)
    (run / "config.json").write_text(json.dumps(config))
    rows = []
    for q in questions:
        letter = (answers or {}).get(q, "A" if q in right else "B")
        sel = {"frame_indices": (frames or {}).get(q, FRAMES), "positions": [0, 1, 2, 3],
               "timestamps": [0.0, 1.0, 2.0, 3.0], "sampler": "aks", "config_hash": "h"}
        rows.append({"sample_id": f"q{q:02d}", "answer": "A", "categories": {}, "selection": sel, "evidence": [],
                     "prediction": {"raw_text": letter, "parsed": letter, "correct": letter == "A",
                                    "parse_status": "ok", "error": None, "timings": {}}})
    (run / "predictions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return run


def binomial_p(b, c):
    """The two-sided exact McNemar p, by hand (independent of harness.report.stats)."""
    n = b + c
    return min(1.0, 2 * sum(math.comb(n, i) for i in range(min(b, c) + 1)) / 2 ** n)


@pytest.fixture
def base(tmp_path):
    """A baseline saved from a run right on questions 0..29 (30 of 40: 75.0)."""
    run = write_run(tmp_path / "base", "run", set(range(30)))
    path = tmp_path / "baseline.json"
    save([run], path)
    return path


def test_baseline_file_is_versioned_and_holds_every_sample(base):
    doc = load(base)
    assert doc["format"] == "longvideo-harness-baseline" and doc["version"] == 1
    [entry] = doc["runs"]
    assert entry["summary"] == {"n": 40, "correct": 30, "accuracy": 75.0, "parse_failed": 0, "errors": 0}
    assert entry["subset"]["limit"] is None and entry["identity"]["sampler"]["config"] == {"t1": 0.8}
    assert entry["sample_fields"] == ["id", "gold", "parsed", "correct", "frames"]
    first = entry["samples"][0]
    assert first[:4] == ["q00", "A", "A", True] and len(first[4]) == 12
    assert entry["samples"][35][:4] == ["q35", "A", "B", False]
    assert base.read_text().count("\n") > 40  # one sample per line


def test_exact_mode_passes_an_identical_run(tmp_path, base):
    reg = regress([write_run(tmp_path, "same", set(range(30)))], base)
    assert reg.exit_code == 0 and reg.runs[0].differences == 0


def test_exact_mode_catches_one_changed_selection(tmp_path, base):
    run = write_run(tmp_path, "moved", set(range(30)), frames={7: [0, 30, 60, 91]})
    reg = regress([run], base)
    assert reg.exit_code == 1 and reg.runs[0].differences == 1
    [d] = reg.runs[0].first
    assert (d.sample_id, d.fields, d.frame_indices) == ("q07", ["frames"], [0, 30, 60, 91])
    assert d.baseline_answer == d.answer == "A" and d.baseline_frames != d.frames
    assert "q07" in render(reg, "rich") and render(reg, "rich").strip().splitlines()[-1].startswith("FAIL")


def test_exact_mode_catches_one_changed_answer(tmp_path, base):
    run = write_run(tmp_path, "answer", set(range(30)), answers={33: "C"})  # wrong before, wrong now: same accuracy
    reg = regress([run], base)
    assert reg.exit_code == 1 and reg.runs[0].accuracy == reg.runs[0].baseline_accuracy
    [d] = reg.runs[0].first
    assert (d.sample_id, d.fields, d.baseline_answer, d.answer) == ("q33", ["answer"], "B", "C")


def test_accuracy_mode_passes_an_insignificant_drop(tmp_path, base):
    # lost q00..q02 (b=3), won q30 (c=1): -5 points, p = 2 * (1 + 4) / 16 = 0.625
    run = write_run(tmp_path, "small", set(range(3, 31)))
    reg = regress([run], base, mode="accuracy")
    r = reg.runs[0]
    assert (r.b, r.c) == (3, 1) and r.p == pytest.approx(0.625) == pytest.approx(binomial_p(3, 1))
    assert r.change == pytest.approx(-5.0) and reg.exit_code == 0 and r.verdict.startswith("insignificant drop")


def test_accuracy_mode_fails_a_significant_drop(tmp_path, base):
    # lost q00..q07 (b=8, c=0): -20 points, p = 2 / 2^8 = 0.0078125
    run = write_run(tmp_path, "big", set(range(8, 30)))
    reg = regress([run], base, mode="accuracy")
    r = reg.runs[0]
    assert (r.b, r.c) == (8, 0) and r.p == pytest.approx(2 / 256) == pytest.approx(binomial_p(8, 0))
    assert r.change == pytest.approx(-20.0) and reg.exit_code == 1 and r.verdict.startswith("regression")
    # the same drop passes when --max-drop allows it
    assert regress([run], base, mode="accuracy", max_drop=20.0).exit_code == 0


def test_accuracy_mode_passes_an_improvement(tmp_path, base):
    run = write_run(tmp_path, "better", set(range(36)))  # won q30..q35: b=0, c=6, p = 2/64
    reg = regress([run], base, mode="accuracy")
    assert reg.exit_code == 0 and reg.runs[0].p == pytest.approx(binomial_p(0, 6)) == pytest.approx(0.03125)
    assert reg.runs[0].verdict.startswith("improvement: +15.0")


def test_holm_by_hand():
    # sorted 0.01, 0.03, 0.04 (m=3): 3*0.01 = 0.03; max(0.03, 2*0.03) = 0.06; max(0.06, 1*0.04) = 0.06
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm([0.5, 0.6]) == pytest.approx([1.0, 1.0])  # capped at 1, kept monotone
    assert holm([]) == []
    with pytest.raises(HarnessError):
        holm([1.5])


def test_accuracy_mode_adjusts_across_runs_with_holm(tmp_path, base):
    big = write_run(tmp_path, "big", set(range(8, 30)))  # p = 2/256
    small = write_run(tmp_path, "small", set(range(3, 31)))  # p = 0.625
    reg = regress([big, small], base, mode="accuracy", alpha=0.01)
    # Holm, m=2: 2 * 0.0078125 = 0.015625; max(0.015625, 0.625) = 0.625. Raw p < 0.01 but adjusted is not.
    assert [r.p_holm for r in reg.runs] == pytest.approx([0.015625, 0.625])
    assert reg.exit_code == 0
    assert regress([big, small], base, mode="accuracy", alpha=0.05).exit_code == 1


def test_a_limit_subset_compares_only_its_samples(tmp_path, base):
    run = write_run(tmp_path, "subset", set(range(30)), limit=12)  # q00..q11, all right
    reg = regress([run], base, mode="accuracy")
    r = reg.runs[0]
    assert r.n == 12 and r.baseline_accuracy == 100.0 and r.accuracy == 100.0 and reg.exit_code == 0
    assert regress([run], base).exit_code == 0


def test_mismatched_identity_exits_2_naming_the_field(tmp_path, base, capsys):
    run = write_run(tmp_path, "t1", set(range(30)), sampler_config={"t1": 0.5})
    with pytest.raises(HarnessError, match=r"matches no entry.*differs in sampler\.config\.t1 \(baseline 0\.8, "
                                           r"run 0\.5\)"):
        regress([run], base)
    assert main(["regress", str(run), "--baseline", str(base)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "sampler.config.t1" in err[0]


def test_bad_input_exits_2(tmp_path, base, capsys):
    run = write_run(tmp_path, "ok", set(range(30)))
    (tmp_path / "junk.json").write_text('{"format": "something else"}')
    assert main(["regress", str(run), "--baseline", str(tmp_path / "junk.json")]) == 2
    assert main(["regress", str(run), "--baseline", str(tmp_path / "missing.json")]) == 2
    assert main(["regress", str(run), "--baseline", str(base), "--alpha", "2"]) == 2
    incomplete = write_run(tmp_path, "cut", set(range(30)))
    lines = (incomplete / "predictions.jsonl").read_text().splitlines()
    (incomplete / "predictions.jsonl").write_text("\n".join(lines[:20]) + "\n")
    assert main(["regress", str(incomplete), "--baseline", str(base)]) == 2
    assert "holds 20 of the 40 samples it selected" in capsys.readouterr().err


def test_junit_report_parses_with_one_testcase_per_run(tmp_path, base):
    runs = [write_run(tmp_path, "same", set(range(30))), write_run(tmp_path, "moved", set(range(30)),
                                                                   frames={7: [1, 30, 60, 90]})]
    out = tmp_path / "report.xml"
    assert main(["regress", *map(str, runs), "--baseline", str(base), "--junit", str(out), "--format", "md"]) == 1
    root = ET.parse(out).getroot()
    cases = root.findall(".//testcase")
    assert len(cases) == 2 and root.get("tests") == "2" and root.get("failures") == "1"
    assert cases[0].find("failure") is None and cases[1].find("failure") is not None
    assert "q07" in cases[1].find("failure").text
    assert ET.fromstring(render(regress(runs, base), "junit")).tag == "testsuites"


def test_cli_saves_a_baseline_and_prints_json(tmp_path, capsys):
    run = write_run(tmp_path, "r", set(range(10)))
    out = tmp_path / "b.json"
    assert main(["baseline", "save", str(run), "--out", str(out)]) == 0
    assert "1 runs, 40 samples" in capsys.readouterr().out
    assert main(["regress", str(run), "--baseline", str(out), "--format", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["passed"] and doc["exit_code"] == 0 and len(doc["runs"]) == 1
    assert main(["baseline", "save", str(run), str(run), "--out", str(out)]) == 2  # one run per identity
