"""The resolved configuration of a `harness run`: every default written out, nothing hidden."""
from __future__ import annotations

import difflib
import json
import subprocess
import tomllib
import typing
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
    # decode processes that stay ahead of the backbone (0: decode in this process). One by default: on the 2-core
    # machine the offline default ran 74-76 s cold against 89 s decoding in this process (README, Speed)
    workers: int = 1
    gpu_decoders: int = 0  # NVDEC decoders (threads here, or processes: nvdec_processes) beside the CPU --workers
    nvdec_processes: bool = False  # NVDEC decoders (--gpu-decoders, or nvdec's --workers) as processes, not threads
    batch_size: int = 1  # questions of one video per backbone call (questions sharing frames batch first)
    frame_cache_mb: int = 1024  # frames the feature pass decoded, kept for the answer pass (0: decode again)
    gpus_per_replica: int = 1  # GPUs one backbone replica spans (device_map); data parallel across replicas
    retry_errors: bool = False  # re-do the rows of a run that ended as errors (after fixing their cause)

    @classmethod
    def from_file(cls, path: str | Path) -> "RunConfig":
        """A JSON or TOML file whose keys are RunConfig fields, each of its field's type."""
        path = Path(path)
        if not path.is_file():
            raise HarnessError(f"config file {path} does not exist")
        try:
            text = path.read_bytes().decode("utf-8")
            data = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
        except UnicodeDecodeError:
            raise HarnessError(f"config file {path} is not UTF-8 text") from None
        except (json.JSONDecodeError, tomllib.TOMLDecodeError) as e:
            raise HarnessError(f"config file {path} is malformed: {e}") from None
        if not isinstance(data, dict):
            raise HarnessError(f"config file {path} must hold a table of options")
        known = sorted(f.name for f in fields(cls))
        for key in data:
            if key not in known:
                close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
                hint = f"; did you mean {close[0]}?" if close else ""
                raise HarnessError(f"config file {path}: unknown option {key!r}{hint} (known: {', '.join(known)})")
        return cls(**data).validate(source=f"config file {path}")

    def validate(self, source: str | None = None) -> "RunConfig":
        """Every field of its annotated type and in range, else a HarnessError naming the option (`source`: the
        config file the values come from, whose fields are named as keys); from the command line (no source), the
        device must also exist on this machine. Returns the config."""
        def option(field_name: str) -> str:  # as the file or the command line names it
            return field_name if source else "--" + field_name.replace("_", "-")

        def name(field_name: str) -> str:
            return f"{source}: {field_name}" if source else option(field_name)

        hints = typing.get_type_hints(type(self))
        for f in fields(self):
            check_type(name(f.name), getattr(self, f.name), hints[f.name])
        for key, low in {"frames": 1, "workers": 0, "gpu_decoders": 0, "batch_size": 1, "gpus_per_replica": 1,
                         "limit": 1, "frame_cache_mb": 0}.items():
            value = getattr(self, key)
            if value is not None and value < low:
                raise HarnessError(f"{name(key)} must be at least {low}, got {value}")
        for key, known in CHOICES.items():  # named here, with a close match, before any stage reads them
            value = getattr(self, key)
            if value not in known:
                close = difflib.get_close_matches(value, known, n=1, cutoff=0.5)
                hint = f"; did you mean {close[0]}?" if close else ""
                raise HarnessError(f"{name(key)} must be one of {', '.join(known)}, got {value!r}{hint}")
        if self.frames > MAX_FRAMES:
            raise HarnessError(f"{name('frames')} must be at most {MAX_FRAMES}, got {self.frames}: more frames than "
                               f"any video-LLM takes")
        if self.gpu_decoders:
            self._check_gpu_decoders(name("gpu_decoders"), option, check_available=source is None)
        check_nvdec_processes(self, name("nvdec_processes"), option)
        if source is None and self.device != "cpu":  # torch only where a device is named
            from harness.util.checks import torch_device

            torch_device(self.device)
        return self

    def _check_gpu_decoders(self, said: str, option, check_available: bool) -> None:
        """NVDEC decoders beside CPU decode processes: the pipelined executor with a CPU backend, and nvdec here
        (`said`: the option as the message names it; `option(field)`: another field's name)."""
        said = f"{said} {self.gpu_decoders}"
        if self.decode_backend not in CPU_BACKENDS:
            raise HarnessError(f"{said} needs a CPU {option('decode_backend')} ({', '.join(CPU_BACKENDS)}), got "
                               f"{self.decode_backend!r} (nvdec alone decodes in {option('workers')} threads)")
        if self.workers < 1:
            raise HarnessError(f"{said} needs {option('workers')} of at least 1 (the decoders work beside the "
                               f"pipelined executor's decode processes), got {self.workers}")
        if check_available:
            from harness.video.reader import check_backend

            try:
                check_backend("nvdec")
            except HarnessError as e:
                raise HarnessError(f"{said}: {e}") from None

    def to_json(self) -> dict:
        return asdict(self)


def check_nvdec_processes(cfg, said: str, option) -> None:
    """`nvdec_processes` needs NVDEC decoders to move into processes: `gpu_decoders`, or the `workers` of the nvdec
    backend (`cfg`: a RunConfig or BenchConfig; `said`: the option as the message names it; `option(field)`)."""
    if cfg.nvdec_processes and not cfg.gpu_decoders and not (cfg.decode_backend == "nvdec" and cfg.workers):
        raise HarnessError(f"{said} needs NVDEC decoders to put in processes: {option('gpu_decoders')} of at least "
                           f"1, or {option('decode_backend')} nvdec with {option('workers')} of at least 1")


# the values a string option may take (harness.video.reader's backends, samplers.base's short-grid rules, the
# dtypes backends accept; tests/faults/test_bad_input.py checks these lists against their owners)
CHOICES = {"dtype": ("float32", "bfloat16", "float16"), "short_grid": ("all", "repeat", "linspace"),
           "decode_backend": ("decord", "pyav", "torchcodec", "nvdec")}
CPU_BACKENDS = ("decord", "pyav", "torchcodec")  # the decode backends --gpu-decoders works beside
MAX_FRAMES = 4096  # a frame budget above any video-LLM's (Qwen2.5-VL's processor caps a video at 768 frames)

_KINDS = {int: "an integer", float: "a number", bool: "true or false", str: "a string", dict: "a table",
          list: "a list"}


def check_type(name: str, value, hint) -> None:
    """`value` of the annotated type (int, float, bool, str, dict, list, each optionally `| None`), else a
    HarnessError "NAME must be ..., got VALUE"."""
    args = typing.get_args(hint)
    if type(None) in args:
        if value is None:
            return
        hint = next(a for a in args if a is not type(None))
    kind = typing.get_origin(hint) or hint
    if kind not in _KINDS:
        return
    if kind is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    elif kind is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    else:
        ok = isinstance(value, kind)
    if not ok:
        raise HarnessError(f"{name} must be {_KINDS[kind]}, got {value!r}")
    if kind is list and not all(isinstance(v, str) for v in value):
        raise HarnessError(f"{name} must be a list of strings, got {value!r}")


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
             "open_clip_torch", "datasets", "pandas", "scenedetect-headless", "opencv-python-headless"]
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
