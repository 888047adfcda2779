"""One reader of a finished (or running) run directory for every report: `harness table`, `harness compare`, the
plots and the HTML report. The files and their layout are harness.store.runs's; this adds what a report names a run
by (task, backbone, K, sampler label) and looks rows up by sample id."""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from harness.errors import HarnessError
from harness.store.runs import load_config, run_rows


def sampler_label(identity: dict, spec: str | None = None) -> str:
    """The sampler spec as the user typed it when the run recorded one, else name(full config)."""
    if spec:
        return spec
    cfg = identity["sampler"]["config"]
    args = ",".join(f"{k}={v}" for k, v in sorted(cfg.items()))
    return identity["sampler"]["name"] + (f"({args})" if args else "")


@dataclass
class RunRows:
    dir: Path
    config: dict  # config.json: the run's identity and options
    task: str
    backbone: str
    frames: int
    sampler: str  # label: the spec as typed, else name(config)
    sampler_name: str
    rows: list[dict]  # one per sample, as predictions.jsonl (and rank files not merged yet) hold them

    @cached_property
    def by_id(self) -> dict[str, dict]:
        return {r["sample_id"]: r for r in self.rows}

    def row(self, sample_id: str) -> dict:
        if sample_id not in self.by_id:
            raise HarnessError(f"{self.dir}: no sample {sample_id!r} in its predictions")
        return self.by_id[sample_id]


def load_run(run_dir) -> RunRows:
    """The run in `run_dir`; a HarnessError when it is no run directory or has no rows yet."""
    run_dir = Path(run_dir)
    config = load_config(run_dir)
    rows = run_rows(run_dir)
    if not rows:
        raise HarnessError(f"{run_dir} has no predictions yet")
    ident = config["identity"]
    return RunRows(run_dir, config, ident["task"]["name"], ident["backbone"]["name"], int(ident["frames"]),
                   sampler_label(ident, config.get("sampler_spec")), ident["sampler"]["name"], rows)
