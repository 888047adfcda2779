"""Scoring summaries and `harness table` on hand-made run directories (expected numbers computed by hand)."""
import csv
import io
import json

import pytest

from harness.cli.app import main
from harness.records import Sample
from harness.scoring.summary import evidence_recall, score_strict, summarise
from harness.store.runs import RunStore


def row(sid, correct, status="ok", cat="x", recall=None):
    parsed = ("A" if correct else "B") if status == "ok" else None  # gold is A: the reader re-scores from this
    return {"sample_id": sid, "categories": {"kind": cat}, "answer": "A",
            "prediction": {"correct": correct, "parsed": parsed, "parse_status": status}, "evidence_recall": recall}


def test_summarise_counts_errors_and_parse_failures_as_wrong():
    rows = [row("a", True), row("b", False, "parse_failed"), row("c", False, "error", "y"), row("d", True, cat="y")]
    m = summarise(rows, ["kind"])
    assert m["overall"] == {"n": 4, "correct": 2, "accuracy": 50.0, "parse_failed": 1, "errors": 1,
                            "evidence_recall": None}
    assert m["by"]["kind"]["x"]["accuracy"] == 50.0 and m["by"]["kind"]["y"]["n"] == 2


def test_summarise_multilabel_counts_in_every_label():
    rows = [row("a", True), row("b", False)]
    rows[0]["categories"]["kind"] = ["p", "q"]
    m = summarise(rows, ["kind"])
    assert m["by"]["kind"]["p"]["n"] == 1 and m["by"]["kind"]["q"]["n"] == 1 and m["by"]["kind"]["x"]["n"] == 1


def test_evidence_recall():
    assert evidence_recall([(10, 14), (30, 33)], [0, 11, 20]) == 0.5
    assert evidence_recall([(10, 14)], [14.0]) == 0.0  # intervals are half-open
    assert evidence_recall([], [1, 2]) is None
    m = summarise([row("a", True, recall=1.0), row("b", True, recall=0.5), row("c", True)])
    assert m["overall"]["evidence_recall"] == 75.0


def test_score_strict_never_guesses():
    s = Sample("q", "v.mp4", "?", ("red", "blue", "green", "cyan"), 2)
    assert score_strict(s, "C").correct and score_strict(s, "The square is green.").parsed == "C"
    failed = score_strict(s, "no idea")
    assert failed.parse_status == "parse_failed" and failed.parsed is None and not failed.correct


def make_run(root, sampler, outcomes):
    identity = {"task": {"name": "demo", "config": {}}, "backbone": {"name": "bb", "config": {}},
                "sampler": {"name": sampler, "config": {"variant": "v"}, "config_hash": "h"}, "frames": 8}
    with RunStore(root, identity, {}) as store:
        for i, (correct, status, cat) in enumerate(outcomes):
            store.append(row(f"s{i}", correct, status, cat))
    return store.dir


@pytest.fixture()
def two_runs(tmp_path):
    a = make_run(tmp_path, "uniform", [(True, "ok", "x"), (False, "ok", "x"), (True, "ok", "y"), (False, "parse_failed", "y")])
    b = make_run(tmp_path, "topk", [(True, "ok", "x"), (True, "ok", "x"), (True, "ok", "y"), (False, "error", "y")])
    return [str(a), str(b)]


def test_table_csv_and_json(two_runs, capsys):
    assert main(["table", *two_runs, "--by", "kind", "--format", "csv"]) == 0
    table = {r["sampler"]: r for r in csv.DictReader(io.StringIO(capsys.readouterr().out))}
    assert float(table["uniform(variant=v)"]["demo (n=4)"]) == 50.0
    assert float(table["topk(variant=v)"]["demo (n=4)"]) == 75.0
    assert float(table["uniform(variant=v)"]["demo parse-fail %"]) == 25.0
    assert float(table["topk(variant=v)"]["demo kind=y (n=2)"]) == 50.0
    assert int(table["topk(variant=v)"]["demo errors"]) == 1
    assert main(["table", *two_runs, "--format", "json"]) == 0
    records = json.loads(capsys.readouterr().out)
    assert sorted(r["demo (n=4)"] for r in records) == [50.0, 75.0]


def test_table_markdown_and_latex(two_runs, capsys):
    assert main(["table", *two_runs, "--format", "md"]) == 0
    md = capsys.readouterr().out.splitlines()
    assert md[0].startswith("| backbone | sampler | frames | demo (n=4) |") and len(md) == 4
    assert main(["table", *two_runs, "--format", "latex"]) == 0
    tex = capsys.readouterr().out
    assert r"\toprule" in tex and r"\bottomrule" in tex and r"parse-fail \%" in tex
    assert "75.0" in tex and "50.0" in tex


def test_table_unknown_category_is_a_clear_error(two_runs, capsys):
    assert main(["table", *two_runs, "--by", "colour"]) == 2
    assert "no category 'colour'" in capsys.readouterr().err


def test_run_summary_reads_whole_at_100_columns(tmp_path):
    """What `harness run` prints: four samplers with long specs and three question types fit in 100 columns, and
    no label or category is cut."""
    from harness.report.table import run_summary

    specs = ["tspo:agent=mini-tspo,encoder=mini-clip", "aks:encoder=mini-clip,depth=3",
             "topk:encoder=mini-clip,query=question", "uniform:variant=segment-centre"]
    kinds = ["appearance", "count", "order"]
    run_dirs = []
    for j, spec in enumerate(specs):
        name = spec.split(":")[0]
        identity = {"task": {"name": "needle", "config": {}}, "backbone": {"name": "mini-qwen2.5-vl", "config": {}},
                    "sampler": {"name": name, "config": {"spec": spec}, "config_hash": name}, "frames": 8}
        with RunStore(tmp_path, identity, {"sampler_spec": spec}) as store:
            for i in range(9):
                r = row(f"s{i}", (i + j) % 3 != 0)
                r["categories"] = {"question_type": kinds[i % 3]}
                store.append(r)
        run_dirs.append(store.dir)
    text = run_summary(run_dirs)
    lines = text.splitlines()
    assert max(map(len, lines)) <= 100
    assert all(any(spec in line for line in lines) for spec in specs)
    assert all(any(f"question_type={k}" in line for line in lines) for k in kinds)
    [header] = [line for line in lines if line.startswith("┃ category ")]
    assert all(name in header.split() for name in ("aks", "topk", "tspo", "uniform"))  # short names head columns
