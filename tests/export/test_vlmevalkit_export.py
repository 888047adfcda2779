"""`harness export --format vlmevalkit` and `--format longvideobench-submission`, read back and checked row by row
against predictions.jsonl. The .xlsx is read here by a reader of the file format (zip + sheet XML), not by the
writer's code; VLMEvalKit's own `load` and `evaluate` on the file are tests/export/test_toolkit_readers.py (side
environment)."""
import json
import zipfile
from xml.etree import ElementTree

import pytest

from export_runs import harness, metrics_of, rows_of

NS = {"m": "http://schemas.openxmlformats.org/spreadsheetml/2006/main"}


def read_xlsx(path) -> list[dict]:
    """The first sheet as a list of {header: value} (inline strings, numbers, booleans; empty cells absent)."""
    with zipfile.ZipFile(path) as z:
        sheet = ElementTree.fromstring(z.read("xl/worksheets/sheet1.xml"))
    table = []
    for row in sheet.iterfind(".//m:row", NS):
        cells = {}
        for c in row.iterfind("m:c", NS):
            col = "".join(ch for ch in c.get("r") if ch.isalpha())
            if c.get("t") == "inlineStr":
                cells[col] = "".join(t.text or "" for t in c.iterfind(".//m:t", NS))
            elif c.get("t") == "b":
                cells[col] = c.find("m:v", NS).text == "1"
            else:
                text = c.find("m:v", NS).text
                cells[col] = float(text) if any(x in text for x in ".eE") else int(text)
        table.append(cells)
    header = table[0]
    return [{header[k]: v for k, v in r.items()} for r in table[1:]]


GOLD_COLUMNS = {"videomme": "answer", "longvideobench": "correct_choice", "mlvu": "answer"}


@pytest.mark.parametrize("task", ["videomme", "longvideobench", "mlvu"])
def test_prediction_file_row_by_row(stand_in_run, tmp_path, task):
    from harness.registry import TASKS
    from harness.export.vlmevalkit import ERROR_MARKER

    run_dir = stand_in_run(task, protocol="vlmevalkit")
    out = tmp_path / "pred"
    assert harness("export", run_dir, "--format", "vlmevalkit", "--out", out) == 0
    [xlsx] = list(out.iterdir())
    dataset = {"videomme": "Video-MME", "longvideobench": "LongVideoBench", "mlvu": "MLVU"}[task]
    assert xlsx.name == f"harness-export-script-probe-uniform:variant=vlmevalkit_{dataset}_4frame.xlsx"
    table = read_xlsx(xlsx)
    rows = {r["sample_id"]: r for r in rows_of(run_dir)}
    assert sorted(t["harness_sample_id"] for t in table) == sorted(rows)
    assert [t["index"] for t in table] == list(range(len(rows)))  # the position: VLMEvalKit scores by it
    cfg = json.loads((run_dir / "config.json").read_text())
    rebuilt = TASKS.create(task, **cfg["run"]["task_args"])
    samples = {s.id: s for s in rebuilt.load_samples()}
    statuses = set()
    for t in table:
        row = rows[t["harness_sample_id"]]
        pred = row["prediction"]
        statuses.add(pred["parse_status"])
        assert t["harness_parse_status"] == pred["parse_status"]
        s = samples[row["sample_id"]]
        assert eval(t["candidates"]) == (list(s.metadata["options"]) if task == "videomme" else list(s.options))
        gold = t[GOLD_COLUMNS[task]]
        assert gold == {"videomme": row["answer"], "longvideobench": s.answer, "mlvu": s.options[s.answer]}[task]
        if pred["parse_status"] == "error":
            assert t["prediction"] == ERROR_MARKER and t["harness_error"] == pred["error"]
        else:
            assert t["prediction"] == pred["raw_text"] and "harness_error" not in t  # empty cell
        # the file's text, matched by the harness's VLMEvalKit matcher (parity-checked), scores as the row does
        assert rebuilt.score(s, t["prediction"]).correct == pred["correct"]
        if pred["parse_status"] == "ok":
            assert t["harness_parsed"] == pred["parsed"]
    assert statuses == {"ok", "parse_failed", "error"}
    assert metrics_of(run_dir)["protocol"]["framework"] == "VLMEvalKit"


def test_refused_runs_and_outputs(stand_in_run, needle_runs, tmp_path, capsys):
    lmms_run = stand_in_run("videomme")
    assert harness("export", lmms_run, "--format", "vlmevalkit", "--out", tmp_path / "a") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--protocol vlmevalkit" in err
    assert harness("export", needle_runs, "--format", "vlmevalkit", "--sampler", "uniform") == 2
    assert "no prediction file for task 'needle'" in capsys.readouterr().err
    assert harness("export", needle_runs, "--format", "lmms-eval", "--out", tmp_path / "x.json") == 2
    assert "2 runs are exported (one per sampler and K), so --out is a folder" in capsys.readouterr().err
    vlm_run = stand_in_run("mlvu", protocol="vlmevalkit")
    assert harness("export", vlm_run, "--format", "vlmevalkit", "--out", tmp_path / "p.csv") == 2
    assert ".xlsx" in capsys.readouterr().err
    assert harness("export", vlm_run, "--format", "vlmevalkit", "--out", tmp_path / "mine.xlsx") == 0
    assert (tmp_path / "mine.xlsx").is_file()


def test_xlsx_cells_refuse_what_a_sheet_cannot_hold():
    from harness.errors import HarnessError
    from harness.export.xlsx import column_name, xlsx_bytes

    assert [column_name(i) for i in (0, 25, 26, 701, 702)] == ["A", "Z", "AA", "ZZ", "AAA"]
    with pytest.raises(HarnessError, match="control character"):
        xlsx_bytes(["a"], [{"a": "bell\x07"}])
    with pytest.raises(HarnessError, match="32767"):
        xlsx_bytes(["a"], [{"a": "x" * 32768}])
    assert xlsx_bytes(["a"], [{"a": "<&>"}]) == xlsx_bytes(["a"], [{"a": "<&>"}])  # same table, same bytes


def test_longvideobench_submission(stand_in_run, tmp_path, capsys):
    run_dir = stand_in_run("longvideobench")
    assert harness("export", run_dir, "--format", "longvideobench-submission", "--out", tmp_path / "s") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "1 error rows" in err and "--retry-errors" in err  # nothing made up
    assert not (tmp_path / "s").exists()
    # the same questions without the unreadable video: every question answered
    rows = [r for r in rows_of(run_dir) if r["prediction"]["parse_status"] != "error"]
    keep = {r["sample_id"] for r in rows}
    cfg = json.loads((run_dir / "config.json").read_text())
    ann = cfg["run"]["task_args"]["annotations"]
    records = [r for r in json.loads(open(ann).read()) if r["id"] in keep]
    open(ann, "w").write(json.dumps(records))
    out = tmp_path / "runs2"
    assert harness("run", "--task", "longvideobench", "--task-arg", f"annotations={ann}", "--video-root",
                   cfg["run"]["task_args"]["video_root"], "--backbone", "export-script-probe", "--sampler", "uniform",
                   "--frames", 4, "--out", out, "--cache-dir", tmp_path / "cache", "--decode-backend", "pyav",
                   "--no-progress") == 0
    [run2] = list(out.iterdir())
    capsys.readouterr()
    assert harness("export", run2, "--format", "longvideobench-submission", "--out", tmp_path / "sub") == 0
    note = capsys.readouterr().err  # a validation run: the file only checks the format
    assert note.count("\n") == 1 and "validation-split run" in note and "split=test" in note
    sub = json.loads((tmp_path / "sub" / "longvideobench_test_for_submission.json").read_text())
    by_id = {r["sample_id"]: r for r in rows_of(run2)}
    assert list(sub) == [r["id"] for r in records]  # question order
    assert sub == {k: by_id[k]["prediction"]["raw_text"] for k in sub}  # the text itself, parse failures too
    assert any(by_id[k]["prediction"]["parse_status"] == "parse_failed" for k in sub)
    assert harness("export", run2, "--format", "longvideobench-submission", "--out", tmp_path / "mine.json") == 0
    assert json.loads((tmp_path / "mine.json").read_text()) == sub


def test_submission_needs_a_longvideobench_run(needle_runs, capsys):
    assert harness("export", needle_runs, "--format", "longvideobench-submission", "--sampler", "uniform") == 2
    assert "needs a longvideobench run" in capsys.readouterr().err


def test_na_like_answers_are_written_as_given_with_a_warning(capsys):
    from types import SimpleNamespace

    from harness.export.vlmevalkit import table
    from harness.records import Sample

    s = Sample(id="q0", video="v.mp4", question="Q?", options=("x", "y"), answer=1,
               categories={"duration_group": "15", "question_category": "S2E"}, metadata={"video_id": "v"})
    row = {"sample_id": "q0", "prediction": {"raw_text": "None", "parsed": None, "correct": False,
                                             "parse_status": "parse_failed", "error": None}, "selection": None}
    run = SimpleNamespace(run=SimpleNamespace(task="longvideobench", sampler="uniform"), rows=[row], dir="RUN",
                          sample=lambda r: s, trace=lambda r: {"parse_status": "parse_failed", "error": None,
                                                               "run": "h", "sampler": "uniform", "frames": 4,
                                                               "frame_indices": None})
    columns, rows = table(run)
    assert rows[0]["prediction"] == "None" and columns[-9] == "prediction"
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "1 answers (first 'q0') are blank or NA-like" in err
