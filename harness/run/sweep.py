"""`harness sweep`: a grid of runs over frame budgets (and any other option); the command then writes the
comparison tables, plots and HTML report of the runs to one folder (harness.report.bundle.write_bundle).

Every run of the grid is an ordinary `harness run` (own run directory, resume, feature store), so a sweep reuses
whatever earlier runs and features exist: rerunning it computes only what is missing.
"""
from __future__ import annotations

import itertools
from dataclasses import fields, replace
from pathlib import Path

from harness.config import RunConfig, parse_value
from harness.errors import HarnessError


def split_samplers(specs: list[str]) -> list[str]:
    """`--sampler uniform,topk:encoder=x,query=question,aks` -> one spec per sampler: a comma starts a new spec only
    where a registered sampler name follows (option values may hold commas: `aks:t1=0.2,depth=3`)."""
    from harness.registry import SAMPLERS

    names = set(SAMPLERS.names())
    out = []
    for spec in specs:
        current = []
        for part in spec.split(","):
            if current and part.split(":", 1)[0] in names:
                out.append(",".join(current))
                current = []
            current.append(part)
        out.append(",".join(current))
    return [s for s in out if s]


def parse_sets(sets: list[str]) -> list[tuple[str, list]]:
    """`--set key=v1,v2`: a RunConfig option (grid, short_grid, dtype, ...) or `task.KEY` / `backbone.KEY`."""
    known = {f.name for f in fields(RunConfig)} - {"task_args", "backbone_args", "samplers", "frames"}
    out = []
    for item in sets:
        key, sep, values = item.partition("=")
        if not sep or not values:
            raise HarnessError(f"--set {item!r}: expected KEY=VALUE[,VALUE...]")
        if key not in known and not key.startswith(("task.", "backbone.")):
            raise HarnessError(f"--set {key!r}: not a run option (known: {', '.join(sorted(known))}, task.KEY, "
                               f"backbone.KEY)")
        out.append((key, [parse_value(v) for v in values.split(",")]))
    return out


def expand(base: RunConfig, frames: list[int], sets: list[tuple[str, list]]) -> list[RunConfig]:
    """One RunConfig per combination of the --set values and the frame budgets."""
    if not frames:
        raise HarnessError("--frames needs at least one budget, e.g. 8,16,32,64")
    configs = []
    for combo in itertools.product(*(values for _, values in sets)):
        cfg = replace(base, task_args=dict(base.task_args), backbone_args=dict(base.backbone_args))
        for (key, _), value in zip(sets, combo):
            if key.startswith("task."):
                cfg.task_args[key[5:]] = value
            elif key.startswith("backbone."):
                cfg.backbone_args[key[9:]] = value
            else:
                setattr(cfg, key, value)
        configs += [replace(cfg, frames=int(k)) for k in frames]
    return configs


def run_grid(configs: list[RunConfig], debug: bool = False, progress: bool = True, log=print) -> list[Path]:
    from harness.run.runner import Run

    run_dirs = []
    for i, cfg in enumerate(configs, 1):
        log(f"sweep {i}/{len(configs)}: K={cfg.frames}" + "".join(
            f", {k}={getattr(cfg, k)}" for k in ("grid", "short_grid") if getattr(cfg, k) != getattr(RunConfig(), k)))
        run_dirs += Run(cfg, debug=debug, progress=progress).execute()
    return run_dirs
