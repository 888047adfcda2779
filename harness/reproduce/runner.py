"""Running a recipe's cells with the harness and the verdict table.

Cells whose runs differ only in the sampler share one `Run` (one backbone load, one feature pass), exactly as
`harness run` with several --sampler options does; each sampler gets its run directory under --out, so rerunning a
recipe resumes every run where it stopped and reuses those that finished. The measured number is read from the run
directory's metrics.json at the cell's `metric` path; the verdict compares it with the published number.
"""
from __future__ import annotations

import json
import shlex
from dataclasses import dataclass, field
from pathlib import Path

from harness.errors import HarnessError
from harness.reproduce.recipe import PLACEHOLDER, Cell, Recipe


@dataclass
class Settings:
    out: str = "runs"
    cache_dir: str = ".cache/features"
    device: str | None = None  # None: the recipe's
    workers: int = 0
    batch_size: int = 1
    decode_backend: str | None = None  # None: RunConfig's default
    gpu_decoders: int = 0
    nvdec_processes: bool = False
    limit: int | None = None
    data_root: str | None = None
    cells: list = field(default_factory=list)  # only these cell names (empty: all)
    progress: bool = False
    debug: bool = False


def list_table(recipes: dict) -> str:
    lines = ["| recipe | world | paper, table, row | cells (published) | tolerance |", "|---|---|---|---|---|"]
    for r in recipes.values():
        cells = ", ".join(f"{c.name} {c.published:g}" for c in r.cells)
        lines.append(f"| {r.name} | {r.world} | {r.paper}, {r.table}, {r.row} | {cells} | +-{r.tolerance:g} |")
    return "\n".join(lines) + f"\n{len(recipes)} recipes, {sum(len(r.cells) for r in recipes.values())} cells\n"


def _resolver(dry_run: bool):
    """{model:NAME} -> the fetched folder (dry run: left as written, with what fetches it)."""
    from harness.fetch import catalog
    from harness.fetch.jobs import model_folder

    def resolve(value):
        if not isinstance(value, str):
            return value

        def one(m):
            if dry_run:
                return m.group(0)
            return str(model_folder(catalog.model(m.group(1))))
        return PLACEHOLDER.sub(one, value)
    return resolve


def task_args(cell: Cell, settings: Settings, check: bool) -> dict:
    """The cell's task options plus where `harness data fetch` put its data (when the recipe does not say)."""
    from harness.fetch import catalog

    args = dict(cell.run.get("task_args", {}))
    task = cell.run["task"]
    if task in catalog.DATASETS:
        where = catalog.DATASETS[task].locations(catalog.data_root(settings.data_root))
        args = {**where, **args}
        if check and not Path(args["annotations"]).is_file():
            raise HarnessError(f"task {task}: {args['annotations']} does not exist; run `harness data fetch --task "
                               f"{task}` (or pass --data-root)")
    return args


def run_config(cell: Cell, settings: Settings, resolve, check: bool):
    from harness.config import RunConfig

    run = cell.run
    return RunConfig(
        task=run["task"], task_args=task_args(cell, settings, check), backbone=run["backbone"],
        backbone_args={k: resolve(v) for k, v in run.get("backbone_args", {}).items()},
        samplers=[cell.sampler_spec(resolve)], frames=run["frames"], grid=run.get("grid", "1fps"),
        short_grid=run.get("short_grid", "all"), limit=settings.limit, out=settings.out,
        cache_dir=settings.cache_dir, device=settings.device or run.get("device", "cpu"),
        dtype=run.get("dtype", "float32"), workers=settings.workers, batch_size=settings.batch_size,
        gpu_decoders=settings.gpu_decoders, nvdec_processes=settings.nvdec_processes,
        **({"decode_backend": settings.decode_backend} if settings.decode_backend else {}))


def command_line(cfg) -> str:
    """The `harness run` command one RunConfig is."""
    words = ["harness", "run", "--task", cfg.task]
    words += [w for k, v in cfg.task_args.items() for w in ("--task-arg", f"{k}={_value(v)}")]
    words += ["--backbone", cfg.backbone]
    words += [w for k, v in cfg.backbone_args.items() for w in ("--backbone-arg", f"{k}={_value(v)}")]
    words += [w for s in cfg.samplers for w in ("--sampler", s)]
    words += ["--frames", str(cfg.frames), "--grid", cfg.grid, "--short-grid", cfg.short_grid, "--device",
              cfg.device, "--dtype", cfg.dtype, "--out", cfg.out]
    if cfg.limit:
        words += ["--limit", str(cfg.limit)]
    # the speed options, where not the defaults (they change no answer, but the command is the one run)
    default = type(cfg)()
    for key in ("decode_backend", "workers", "gpu_decoders", "batch_size"):
        if getattr(cfg, key) != getattr(default, key):
            words += ["--" + key.replace("_", "-"), str(getattr(cfg, key))]
    if cfg.nvdec_processes:
        words.append("--nvdec-processes")
    return shlex.join(words)


def _value(v) -> str:
    return json.dumps(v) if isinstance(v, bool) else str(v)


def groups(recipe: Recipe, settings: Settings, resolve, check: bool) -> list[tuple[object, list[Cell]]]:
    """(one RunConfig with every sampler its cells need, those cells), in recipe order."""
    chosen = [c for c in recipe.cells if not settings.cells or c.name in settings.cells]
    unknown = sorted(set(settings.cells) - {c.name for c in recipe.cells})
    if unknown:
        raise HarnessError(f"--cell {unknown[0]!r}: recipe {recipe.name!r} has cells "
                           f"{', '.join(c.name for c in recipe.cells)}")
    out: dict[str, tuple] = {}
    for cell in chosen:
        cfg = run_config(cell, settings, resolve, check)
        key = json.dumps({**cfg.to_json(), "samplers": None}, sort_keys=True)
        if key not in out:
            out[key] = (cfg, [])
        elif cfg.samplers[0] not in out[key][0].samplers:
            out[key][0].samplers.append(cfg.samplers[0])
        out[key][1].append(cell)
    return list(out.values())


def measured(run_dir: Path, metric: str) -> tuple[float | None, int | None]:
    """(the metric's value, questions answered) from a run directory's metrics.json."""
    data = json.loads((Path(run_dir) / "metrics.json").read_text())["metrics"]
    value = data
    for part in metric.split("."):
        if not isinstance(value, dict) or part not in value:
            raise HarnessError(f"{run_dir}/metrics.json has no {metric!r} (at {part!r})")
        value = value[part]
    return (None if value is None else float(value)), data.get("overall", {}).get("n")


def verdict_table(recipe: Recipe, rows: list[tuple]) -> tuple[str, bool]:
    lines = [f"# {recipe.name}: {recipe.paper}, {recipe.table}, {recipe.row}", f"source: {recipe.source}", "",
             "| cell | published | measured | difference | tolerance | verdict | n | run directory |",
             "|---|---|---|---|---|---|---|---|"]
    ok = True
    for cell, value, n, run_dir in rows:
        if value is None:
            diff, verdict = "-", "no number"
            ok = False
        else:
            d = value - cell.published
            within = abs(d) <= cell.tolerance + 1e-9
            ok &= within
            diff, verdict = f"{d:+.2f}", "within" if within else "OUTSIDE"
        shown = "-" if value is None else f"{value:.2f}"
        lines.append(f"| {cell.name} | {cell.published:g} | {shown} | {diff} | +-{cell.tolerance:g} | {verdict} | "
                     f"{n if n is not None else '-'} | {run_dir} |")
    reasons = sorted({c.tolerance_reason for c, *_ in rows})
    lines += ["", "tolerance: " + " / ".join(reasons),
              f"verdict: {'REPRODUCED' if ok else 'NOT REPRODUCED'} ({sum(1 for r in rows if r[1] is not None and abs(r[1] - r[0].published) <= r[0].tolerance + 1e-9)} of {len(rows)} cells within tolerance)"]
    return "\n".join(lines) + "\n", ok


def reproduce(recipe: Recipe, settings: Settings, dry_run: bool = False, log=print) -> tuple[str, bool]:
    """Dry run: the commands, nothing run. Otherwise run every group (resuming) and return the verdict table."""
    resolve = _resolver(dry_run)
    plan = groups(recipe, settings, resolve, check=not dry_run)
    if dry_run:
        lines = [f"# {recipe.name}: {len(plan)} run(s), {sum(len(c) for _, c in plan)} cell(s); models: "
                 f"{', '.join(recipe.models) or 'none'} (harness models fetch NAME)"]
        for cfg, cells in plan:
            lines.append(f"{command_line(cfg)}    # cells: {', '.join(c.name for c in cells)}")
        return "\n".join(lines) + "\n", True
    from harness.run.runner import Run

    for cfg, _ in plan:  # every option checked before the first run starts
        cfg.validate()
    rows = []
    for cfg, cells in plan:
        log(f"reproduce {recipe.name}: {command_line(cfg)}")
        run = Run(cfg, debug=settings.debug, progress=settings.progress)
        dirs = dict(zip(cfg.samplers, run.execute()))
        if not run.world.is_main:
            continue
        for cell in cells:
            run_dir = dirs[cell.sampler_spec(resolve)]
            value, n = measured(run_dir, cell.metric)
            rows.append((cell, value, n, run_dir))
    return verdict_table(recipe, rows)
