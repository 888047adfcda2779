"""The resolved configuration of a `harness run`: every default written out, nothing hidden."""
from __future__ import annotations

import json
import subprocess
import tomllib
from dataclasses import asdict, dataclass, field, fields
from importlib import metadata
from pathlib import Path

from harness.errors import HarnessError

# The offline default: the needle test split, the shipped mini Qwen2.5-VL, and every sampler family on the shipped
# mini-clip features (AKS at depth 3 = log2 K: deeper official AKS gives fewer than K frames; TSPO with the agent
# trained here, weights/mini-tspo).
DEFAULT_TASK = "needle"
DEFAULT_BACKBONE = "mini-qwen2.5-vl"
DEFAULT_SAMPLERS = ("uniform", "topk:encoder=mini-clip", "aks:encoder=mini-clip,depth=3",
                    "tspo:agent=mini-tspo,encoder=mini-clip")


@dataclass
class RunConfig:
    task: str = DEFAULT_TASK
    task_args: dict = field(default_factory=dict)
    backbone: str = DEFAULT_BACKBONE
    backbone_args: dict = field(default_factory=dict)
    samplers: list = field(default_factory=lambda: list(DEFAULT_SAMPLERS))  # specs "name[:key=value,...]"
    frames: int = 8
    grid: str = "1fps"
    short_grid: str = "all"
    limit: int | None = None
    out: str = "runs"
    cache_dir: str = ".cache/features"
    decode_backend: str = "decord"
    device: str = "cpu"
    dtype: str = "float32"
    # how fast, not what: recorded in config.json, never in the run identity (answers do not depend on them)
    workers: int = 0  # decode processes that stay ahead of the backbone (0: decode in this process)
    batch_size: int = 1  # questions of one video per backbone call (questions sharing frames batch first)
    gpus_per_replica: int = 1  # GPUs one backbone replica spans (device_map); data parallel across replicas
    retry_errors: bool = False  # re-do the rows of a run that ended as errors (after fixing their cause)

    @classmethod
    def from_file(cls, path: str | Path) -> "RunConfig":
        """A JSON or TOML file whose keys are RunConfig fields."""
        path = Path(path)
        if not path.is_file():
            raise HarnessError(f"config file {path} does not exist")
        try:
            data = tomllib.loads(path.read_text()) if path.suffix == ".toml" else json.loads(path.read_text())
        except (json.JSONDecodeError, tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
            raise HarnessError(f"config file {path} is malformed: {e}") from None
        if not isinstance(data, dict):
            raise HarnessError(f"config file {path} must hold a table of options")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise HarnessError(f"config file {path}: unknown option {unknown[0]!r} (known: {', '.join(sorted(known))})")
        return cls(**data)

    def to_json(self) -> dict:
        return asdict(self)


def parse_value(text: str):
    """`key=value` values: JSON where it parses (numbers, booleans, lists), the plain string otherwise."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def parse_assignments(items, what: str) -> dict:
    out = {}
    for item in items:
        key, eq, value = item.partition("=")
        if not eq or not key:
            raise HarnessError(f"{what}: expected key=value, got {item!r}")
        out[key.strip()] = parse_value(value.strip())
    return out


def parse_spec(spec: str) -> tuple[str, dict]:
    """'uniform:variant=linspace-round,foo=1' -> ('uniform', {'variant': 'linspace-round', 'foo': 1})."""
    name, _, rest = spec.partition(":")
    return name.strip(), parse_assignments([p for p in rest.split(",") if p.strip()], f"sampler {spec!r}")


def package_versions() -> dict:
    names = ["longvideo-harness", "torch", "torchvision", "transformers", "numpy", "decord", "av", "torchcodec",
             "open_clip_torch", "datasets", "pandas"]
    out = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def git_commit() -> str | None:
    """The commit of the harness source tree (with '+dirty' when it has uncommitted changes)."""
    root = Path(__file__).resolve().parent.parent
    try:
        sha = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=5).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return (sha + ("+dirty" if dirty else "")) if sha else None
