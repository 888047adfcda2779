"""Issue 16, item 5: predictions.jsonl rows are verified on read, never believed as written.

A run written by the real runner (smoke task, colour probe, uniform frames) is copied and one row edited by hand;
`harness table`, `harness compare` and the reader behind the HTML report must give the unedited run's accuracy and
say on stderr which run and rows failed verification. The expected accuracy comes from the rows as the runner wrote
them (its own `correct` flags), never from the reader under test."""
import json
import shutil

import pytest

from harness.cli.app import main
from harness.config import RunConfig
from harness.run.runner import Run


def rows_of(run_dir):
    return [json.loads(line) for line in (run_dir / "predictions.jsonl").read_text().splitlines()]


def write_rows(run_dir, rows):
    (run_dir / "predictions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """One uniform run at K=3: the probe sees the needle in some videos only, so some rows are wrong."""
    out = tmp_path_factory.mktemp("runs")
    cfg = RunConfig(task="smoke", backbone="colour-probe", samplers=["uniform"], frames=3,
                    task_args={"videos": 6, "duration": 12.0}, out=str(out))
    [run_dir] = Run(cfg, progress=False).execute()
    rows = rows_of(run_dir)
    assert all("digest" in r for r in rows)
    right = sum(r["prediction"]["correct"] for r in rows)
    assert 0 < right < len(rows), "the fixture needs right and wrong rows"
    return run_dir, 100.0 * right / len(rows)


@pytest.fixture()
def copy(written, tmp_path):
    """A fresh copy of the written run to edit, the unedited accuracy, and the first wrong row's index."""
    run_dir, accuracy = written
    dest = tmp_path / "edited" / run_dir.name
    shutil.copytree(run_dir, dest)
    wrong = next(i for i, r in enumerate(rows_of(dest)) if not r["prediction"]["correct"])
    return dest, accuracy, wrong


def new_process(monkeypatch):
    """Each command runs in its own process, and the reader warns about a run once per process."""
    from harness.report import reader

    monkeypatch.setattr(reader, "_reported", set())


def table_accuracy(run_dir, capsys) -> tuple[float, dict, str]:
    assert main(["table", str(run_dir), "--format", "json"]) == 0
    out = capsys.readouterr()
    [record] = json.loads(out.out)
    return record["smoke (n=6)"], record, out.err


def compare_accuracy(run_dir, capsys, notes=None) -> tuple[float, str]:
    assert main(["compare", str(run_dir), "--format", "json", "--resamples", "200"]) == 0
    out = capsys.readouterr()
    doc = json.loads(out.out)
    if notes is not None:
        notes += doc["notes"]
    [rec] = doc["runs"]
    return rec["accuracy"], out.err


def warnings_about(err: str, run_dir) -> list[str]:
    return [line for line in err.splitlines() if str(run_dir) in line]


def test_hand_edited_correct_is_rescored_and_reported(copy, capsys, monkeypatch):
    run_dir, accuracy, wrong = copy
    rows = rows_of(run_dir)
    rows[wrong]["prediction"]["correct"] = True  # typed in by hand; the digest is left as it was
    write_rows(run_dir, rows)
    sid = rows[wrong]["sample_id"]

    got, _, err = table_accuracy(run_dir, capsys)
    assert got == pytest.approx(accuracy)
    [line] = warnings_about(err, run_dir)
    assert sid in line and " 1 row" in line

    new_process(monkeypatch)
    got, err = compare_accuracy(run_dir, capsys)
    assert got == pytest.approx(accuracy)
    [line] = warnings_about(err, run_dir)
    assert sid in line

    from harness.report.reader import load_run  # what the HTML report and the plots read

    assert load_run(run_dir).row(sid)["prediction"]["correct"] is False
    assert capsys.readouterr().err == ""  # reported once per process, however many reports read the run


def test_edited_parsed_letter_fails_its_digest(copy, capsys, monkeypatch):
    """A consistent forgery (the gold letter parsed, status ok, correct) re-scores as right: only the digest
    catches it, and the rule is that a row failing verification counts as wrong and is shown as unverified."""
    run_dir, accuracy, wrong = copy
    rows = rows_of(run_dir)
    pred = rows[wrong]["prediction"]
    pred.update(parsed=rows[wrong]["answer"], parse_status="ok", correct=True,
                raw_text=f"The answer is {rows[wrong]['answer']}.")
    write_rows(run_dir, rows)
    sid = rows[wrong]["sample_id"]

    got, record, err = table_accuracy(run_dir, capsys)
    assert got == pytest.approx(accuracy)
    assert record["smoke unverified"] == 1  # visible in the table itself, not only on stderr
    [line] = warnings_about(err, run_dir)
    assert sid in line and "digest" in line.split(str(run_dir))[1]

    new_process(monkeypatch)
    notes = []
    got, err = compare_accuracy(run_dir, capsys, notes)
    assert got == pytest.approx(accuracy)
    assert sid in warnings_about(err, run_dir)[0]
    assert any("1 of 6 rows failed verification" in n for n in notes)

    assert main(["table", str(run_dir)]) == 0  # the terminal table says so too
    out = capsys.readouterr().out
    assert "1 row failed verification" in " ".join(out.split())


def test_edited_parsed_letter_alone_is_reported(copy, capsys):
    """Only the letter changed (status and correct as written): the accuracy is unchanged, the edit reported."""
    run_dir, accuracy, wrong = copy
    rows = rows_of(run_dir)
    rows[wrong]["prediction"]["parsed"] = rows[wrong]["answer"]
    write_rows(run_dir, rows)
    got, _, err = table_accuracy(run_dir, capsys)
    assert got == pytest.approx(accuracy)
    assert rows[wrong]["sample_id"] in warnings_about(err, run_dir)[0]


def test_rows_without_digest_are_rescored_quietly(copy, capsys):
    """Runs written before rows carried a digest: the same accuracy, and nothing reported as edited."""
    run_dir, accuracy, wrong = copy
    rows = [{k: v for k, v in r.items() if k != "digest"} for r in rows_of(run_dir)]
    write_rows(run_dir, rows)
    got, record, err = table_accuracy(run_dir, capsys)
    assert got == pytest.approx(accuracy)
    assert warnings_about(err, run_dir) == [] and "smoke unverified" not in record

    rows[wrong]["prediction"]["correct"] = True  # without a digest the re-scoring still finds this edit
    write_rows(run_dir, rows)
    got, _, err = table_accuracy(run_dir, capsys)
    assert got == pytest.approx(accuracy)
    [line] = warnings_about(err, run_dir)
    assert rows[wrong]["sample_id"] in line and "digest" not in line.split(str(run_dir))[1]


def test_an_intact_run_reads_silently(written, capsys):
    run_dir, accuracy = written
    got, record, err = table_accuracy(run_dir, capsys)
    assert got == pytest.approx(accuracy) and err == "" and "smoke unverified" not in record
