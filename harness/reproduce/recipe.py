"""The recipe schema (recipes/*.toml), its loader and its validation.

A file holds `[[recipe]]` tables. A recipe is one row of a published table: `name`, `paper`, `table`, `row`,
`source` (paper section or official repository file), `world` (`gpu`, or `offline` for what runs on this machine), a
`tolerance` in points with its `tolerance_reason`, `[recipe.run]` (the run fields its cells share) and
`[[recipe.cell]]`: one published number each (`name`, `published`, `metric`: a dotted path into the run's
metrics.json, default `overall.accuracy`), with run fields of its own that override the shared ones.

Run fields: task, task_args, backbone, backbone_args, sampler, sampler_args (its preset among them), frames, grid,
short_grid, device, dtype, protocol (a sentence: the framework protocol the number was measured under). A string
option may say `{model:NAME}`: the folder `harness models fetch NAME` puts that checkpoint in.
"""
from __future__ import annotations

import difflib
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from harness.errors import HarnessError

RECIPE_KEYS = {"name", "paper", "table", "row", "source", "world", "description", "tolerance", "tolerance_reason",
               "run", "cell"}
RUN_KEYS = {"task": str, "task_args": dict, "backbone": str, "backbone_args": dict, "sampler": str,
            "sampler_args": dict, "frames": int, "grid": str, "short_grid": str, "device": str, "dtype": str,
            "protocol": str}
CELL_KEYS = {"name", "published", "metric", "tolerance", "tolerance_reason", *RUN_KEYS}
REQUIRED_RUN = ("task", "backbone", "sampler", "frames", "protocol")
WORLDS = ("gpu", "offline")
PLACEHOLDER = re.compile(r"\{model:([A-Za-z0-9_.-]+)\}")
NAME = re.compile(r"^[a-z0-9][a-z0-9.-]*$")


@dataclass(frozen=True)
class Cell:
    name: str
    published: float
    metric: str
    tolerance: float
    tolerance_reason: str
    run: dict  # the merged run fields

    def sampler_spec(self, resolve=lambda s: s) -> str:
        args = ",".join(f"{k}={_text(resolve(v))}" for k, v in self.run.get("sampler_args", {}).items())
        return self.run["sampler"] + (f":{args}" if args else "")


@dataclass(frozen=True)
class Recipe:
    name: str
    paper: str
    table: str
    row: str
    source: str
    world: str
    tolerance: float
    tolerance_reason: str
    cells: tuple[Cell, ...]
    description: str = ""
    file: str = ""
    models: tuple[str, ...] = field(default=())  # the {model:NAME} placeholders it uses


def _text(v) -> str:
    return ("true" if v else "false") if isinstance(v, bool) else str(v)


def default_folder() -> Path:
    return Path(__file__).resolve().parents[2] / "recipes"


def _unknown(keys, known, where: str) -> None:
    for key in keys:
        if key not in known:
            close = difflib.get_close_matches(key, sorted(known), n=1, cutoff=0.6)
            raise HarnessError(f"{where}: unknown key {key!r}" + (f"; did you mean {close[0]}?" if close else ""))


def _need(table: dict, key: str, kind, where: str):
    if key not in table:
        raise HarnessError(f"{where}: missing {key!r}")
    value = table[key]
    ok = isinstance(value, kind) and not (kind in (int, float, (int, float)) and isinstance(value, bool))
    if not ok:
        raise HarnessError(f"{where}: {key} must be {getattr(kind, '__name__', 'a number')}, got {value!r}")
    return value


def _placeholders(value) -> list[str]:
    if isinstance(value, str):
        return PLACEHOLDER.findall(value)
    if isinstance(value, dict):
        return [n for v in value.values() for n in _placeholders(v)]
    return []


def parse_recipe(table: dict, file: str) -> Recipe:
    where = f"{file}: recipe {table.get('name', '?')!r}"
    _unknown(table, RECIPE_KEYS, where)
    name = _need(table, "name", str, where)
    if not NAME.match(name):
        raise HarnessError(f"{where}: name must be lower-case letters, digits, '.' and '-'")
    texts = {k: _need(table, k, str, where) for k in ("paper", "table", "row", "source", "tolerance_reason")}
    if "../shared" in texts["source"] or texts["source"].startswith("/"):
        raise HarnessError(f"{where}: source must cite the paper or the official repository, not a local path")
    world = _need(table, "world", str, where)
    if world not in WORLDS:
        raise HarnessError(f"{where}: world must be one of {', '.join(WORLDS)}, got {world!r}")
    tolerance = float(_need(table, "tolerance", (int, float), where))
    shared = table.get("run", {})
    _unknown(shared, RUN_KEYS, where + " [run]")
    cells = []
    for i, c in enumerate(table.get("cell", [])):
        cw = f"{where} cell {c.get('name', i)!r}"
        _unknown(c, CELL_KEYS, cw)
        run = {**shared, **{k: v for k, v in c.items() if k in RUN_KEYS}}
        for key in ("task_args", "backbone_args", "sampler_args"):  # tables merge key by key
            run[key] = {**shared.get(key, {}), **c.get(key, {})}
        for key in REQUIRED_RUN:
            _need(run, key, RUN_KEYS[key], cw)
        for key, value in run.items():
            _need(run, key, RUN_KEYS[key], cw)
        tol = float(c.get("tolerance", tolerance))
        if not tol > 0:
            raise HarnessError(f"{cw}: tolerance must be positive")
        metric = c.get("metric", "overall.accuracy")
        if not isinstance(metric, str) or not re.match(r"^[\w.=-]+$", metric):
            raise HarnessError(f"{cw}: metric must be a dotted path into metrics.json, got {metric!r}")
        cells.append(Cell(_need(c, "name", str, cw), float(_need(c, "published", (int, float), cw)), metric, tol,
                          c.get("tolerance_reason", texts["tolerance_reason"]), run))
    if not cells:
        raise HarnessError(f"{where}: no [[recipe.cell]]")
    if len({c.name for c in cells}) != len(cells):
        raise HarnessError(f"{where}: two cells share a name")
    models = tuple(sorted({n for c in cells for n in _placeholders(c.run)}))
    return Recipe(name, texts["paper"], texts["table"], texts["row"], texts["source"], world, tolerance,
                  texts["tolerance_reason"], tuple(cells), table.get("description", ""), file, models)


def load_recipes(folder=None) -> dict[str, Recipe]:
    """Every recipe of the folder's *.toml files, by name (a name defined twice is an error)."""
    folder = Path(folder) if folder else default_folder()
    if not folder.is_dir():
        raise HarnessError(f"--recipes: {folder} is not a folder")
    out: dict[str, Recipe] = {}
    for path in sorted(folder.glob("*.toml")):
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
            raise HarnessError(f"recipe file {path} is malformed: {e}") from None
        _unknown(data, {"recipe"}, str(path))
        for table in data.get("recipe", []):
            recipe = parse_recipe(table, path.name)
            if recipe.name in out:
                raise HarnessError(f"{path.name}: recipe {recipe.name!r} is also defined in {out[recipe.name].file}")
            out[recipe.name] = recipe
    return out


def check_registered(recipe: Recipe) -> None:
    """Every cell's task, backbone and sampler exists with the options it names (types and choices), its model
    placeholders are known to `harness models fetch`, and its run fields make a valid RunConfig."""
    from harness.config import RunConfig
    from harness.fetch.catalog import MODELS
    from harness.registry import BACKBONES, SAMPLERS, TASKS

    for name in recipe.models:
        if name not in MODELS:
            raise HarnessError(f"recipe {recipe.name!r}: unknown model placeholder {{model:{name}}} (known: "
                               f"{', '.join(sorted(MODELS))})")
    for cell in recipe.cells:
        where = f"recipe {recipe.name!r} cell {cell.name!r}"
        run = cell.run
        for registry, key, args in ((TASKS, "task", "task_args"), (BACKBONES, "backbone", "backbone_args"),
                                    (SAMPLERS, "sampler", "sampler_args")):
            entry = registry.get(run[key])
            params = {p.name: p for p in entry.params}
            for option, value in run.get(args, {}).items():
                if option not in params:
                    close = difflib.get_close_matches(option, sorted(params), n=1)
                    raise HarnessError(f"{where}: {key} {run[key]!r} has no option {option!r}"
                                       + (f"; did you mean {close[0]}?" if close else ""))
                value = params[option].check(value, f"{where}: {key} {run[key]!r}")
                if params[option].choices and value not in params[option].choices:
                    raise HarnessError(f"{where}: {args} {option}={value!r} is not one of "
                                       f"{', '.join(map(str, params[option].choices))}")
        RunConfig(task=run["task"], backbone=run["backbone"], samplers=[cell.sampler_spec()],
                  frames=run["frames"], grid=run.get("grid", "1fps"), short_grid=run.get("short_grid", "all"),
                  device=run.get("device", "cpu"), dtype=run.get("dtype", "float32")).validate(source=where)
