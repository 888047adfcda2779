"""The runner records which samples `--limit` chose in config.json (`subset`), for `harness baseline` and
`harness regress`; the run identity (and so the run directory) keeps its own rule and does not hold it."""
import json

from harness.config import RunConfig
from harness.run.runner import Run


def _config(out, **kw) -> RunConfig:
    return RunConfig(task="smoke", backbone="colour-probe", samplers=["uniform"],
                     task_args={"videos": 6, "duration": 12.0}, out=str(out), **kw)


def test_limit_subset_is_recorded_outside_the_identity(tmp_path):
    [run_dir] = Run(_config(tmp_path, limit=3), progress=False).execute()
    config = json.loads((run_dir / "config.json").read_text())
    assert config["subset"] == {"limit": 3, "stratify": "position", "available": 6, "selected": 3}
    assert "subset" not in config["identity"] and config["identity"]["limit"] == 3
    assert len((run_dir / "predictions.jsonl").read_text().splitlines()) == 3


def test_a_full_run_records_no_limit(tmp_path):
    [run_dir] = Run(_config(tmp_path), progress=False).execute()
    config = json.loads((run_dir / "config.json").read_text())
    assert config["subset"] == {"limit": None, "stratify": "position", "available": 6, "selected": 6}
    assert config["identity"]["limit"] is None
