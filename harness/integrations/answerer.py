"""One video question answered the way `harness run` answers it, for a toolkit that brings its own questions.

`Answerer(...)` holds one sampler, one backbone and the feature store; `answer(AskedQuestion)` opens the video,
builds the candidate grid, computes what the sampler needs (the feature store, keyed by video and query text, as
in `harness run`), selects K frames, decodes them and asks the backbone with the toolkit's own prompt text. The
steps and their order are those of `harness.run.selector.Selector.planned` and `harness.run.runner.Run._answer`,
so the same video, query, prompt and options give the same frames and the same answer text as `harness run`.
It imports no toolkit (harness.integrations.lmms_eval_model adapts it to lmms-eval).
"""
from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from harness.config import DEFAULT_BACKBONE, RunConfig, parse_assignments, parse_spec
from harness.errors import HarnessError, is_fatal
from harness.features.inputs import encoder_specs, wants
from harness.records import Sample
from harness.registry import BACKBONES, SAMPLERS
from harness.run.rows import prompt_digest
from harness.run.runner import check_scales
from harness.video.grid import make_grid, parse_grid_rule
from harness.video.reader import decode_selection, open_video
from samplers.base import apply_sampler

OWNER = "--model_args"  # how option errors name their source (the toolkits pass options as one string)


@dataclass(frozen=True)
class AskedQuestion:
    """What a toolkit asks: `prompt` reaches the backbone as it is; `query` is the text query-aware samplers score
    frames against (harness tasks: the question); `options` only for samplers whose query is question+options."""

    id: str
    video: str
    prompt: str
    query: str
    options: tuple[str, ...] = ()


class _QueryOf:
    """The one thing the feature inputs ask a task for: the query text of a sample (here, the asked query)."""

    @staticmethod
    def query(sample: Sample) -> str:
        return sample.question


def unquote(value):
    """A value lmms-eval kept its quotes on (`sampler="aks:encoder=mini-clip,depth=3"` protects the commas)."""
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        return value[1:-1]
    return value


def split_args(text, what: str) -> dict:
    """'key=value,key=value' (quotes stripped) -> {key: value}; '' -> {}."""
    text = unquote(text)
    if isinstance(text, dict):
        return dict(text)
    if not isinstance(text, str):
        raise HarnessError(f"{OWNER} {what} must be key=value pairs, got {text!r}")
    return parse_assignments([p for p in text.split(",") if p.strip()], f"{OWNER} {what}")


class Answerer:
    def __init__(self, backbone: str = DEFAULT_BACKBONE, backbone_args="", sampler: str = "uniform",
                 frames: int = 8, grid: str = "1fps", short_grid: str = "all", device: str = "cpu",
                 dtype: str = "float32", cache_dir: str = ".cache/features", decode_backend: str = "decord",
                 selections: str | None = None):
        sampler = unquote(sampler)
        if not isinstance(sampler, str) or not sampler.strip() or ";" in sampler:
            raise HarnessError(f"{OWNER} sampler must be one sampler spec such as "
                               f"\"aks:encoder=mini-clip,depth=3\" (one sampler per lmms-eval run), got {sampler!r}")
        # the options `harness run` has, checked by its own rules (types, choices, ranges)
        self.cfg = RunConfig(backbone=backbone, backbone_args=split_args(backbone_args, "backbone_args"),
                             samplers=[sampler], frames=frames, grid=grid, short_grid=short_grid, device=device,
                             dtype=dtype, cache_dir=str(cache_dir), decode_backend=decode_backend)
        self.cfg.validate(source=OWNER)
        self.grid_rule = parse_grid_rule(grid)
        name, args = parse_spec(sampler)
        self.sampler = SAMPLERS.create(name, **args)
        if self.sampler.grid and parse_grid_rule(self.sampler.grid) != self.grid_rule:
            raise HarnessError(f"sampler {name!r} needs grid={self.sampler.grid} (this model has {self.grid_rule})")
        if self.sampler.encoder is not None and self.sampler.query not in ("question", "question+options"):
            raise HarnessError(f"sampler {name!r} scores against {self.sampler.query!r}, which this model cannot "
                               f"supply")
        from harness.features.inputs import InputProvider

        self.inputs = InputProvider(Path(cache_dir), device, dtype)
        for spec in encoder_specs([self.sampler]):  # a bad encoder name fails before any question
            self.inputs.store.encoder(spec)
        factory = BACKBONES.get(backbone).factory
        if isinstance(factory, type):
            check_scales(backbone, factory, [self.sampler])
        self.backbone = BACKBONES.create(backbone, device=device, dtype=dtype, **self.cfg.backbone_args)
        if not self.backbone.answers:
            raise HarnessError(f"{OWNER} backbone {backbone!r} answers nothing (selection only); a toolkit needs "
                               f"answer text")
        check_scales(backbone, self.backbone, [self.sampler])
        self.selections = None if selections in (None, "") else Path(unquote(selections))
        if self.selections is not None:  # one file per model instance, written as questions are answered
            self.selections.parent.mkdir(parents=True, exist_ok=True)
            self.selections.write_text("")
        self.errors = 0

    def config(self) -> dict:
        """What decides the answers: sampler, backbone, frames and grid, as `harness run` records them."""
        return {"sampler": {"spec": self.cfg.samplers[0], "name": self.sampler.name,
                            "config": self.sampler.config(), "config_hash": self.sampler.config_hash},
                "backbone": {"name": self.cfg.backbone, "config": self.backbone.config()},
                "frames": self.cfg.frames, "grid": self.grid_rule, "short_grid": self.cfg.short_grid,
                "dtype": self.cfg.dtype}

    def sample(self, q: AskedQuestion) -> Sample:
        if self.sampler.query == "question+options" and self.sampler.encoder is not None and not q.options:
            raise HarnessError(f"sampler {self.sampler.name!r} scores against the question and its options: name "
                               f"the doc field that holds the options (options_field=...)")
        return Sample(id=q.id, video=q.video, question=q.query, options=q.options, answer=None)

    def answer(self, q: AskedQuestion, extra: dict | None = None) -> str:
        """The backbone's answer text ('' for a question whose video or sampler failed: the error is printed and
        recorded, and counted in `errors`; a fault of the machine, `is_fatal`, stops)."""
        record = {"id": q.id, "video": q.video, "query": q.query, "prompt_sha256": prompt_digest(q.prompt),
                  "sampler": self.cfg.samplers[0], "sampler_config_hash": self.sampler.config_hash,
                  "backbone": self.cfg.backbone, "frames": self.cfg.frames, "grid": self.grid_rule, **(extra or {})}
        t0 = time.perf_counter()
        try:
            text = self._answer(q, record)
            record["answer"] = text
        except Exception as e:
            if is_fatal(e):
                raise
            self.errors += 1
            line = str(e) if isinstance(e, HarnessError) else f"{type(e).__name__}: {e}"
            print(f"harness: question {q.id}: {line} (answered with empty text)", file=sys.stderr)
            record["error"], text = line, ""
        record["seconds"] = round(time.perf_counter() - t0, 4)
        if self.selections is not None:
            with open(self.selections, "a") as f:
                f.write(json.dumps(record) + "\n")
        return text

    def _answer(self, q: AskedQuestion, record: dict) -> str:
        sample, task = self.sample(q), _QueryOf()
        with open_video(q.video, self.cfg.decode_backend) as reader:
            grid = make_grid(reader.meta.frame_count, reader.meta.fps, self.grid_rule)
            record["candidates"] = len(grid)
            self.inputs.prepare(wants([self.sampler]), task, [sample], grid, reader)
            inputs = self.inputs.inputs(self.sampler, task, sample, grid, reader)
            selection = apply_sampler(self.sampler, grid, self.cfg.frames, inputs, self.cfg.short_grid)
            record["selection"] = selection.to_json()
            frames = decode_selection(reader, selection.frame_indices)
        if selection.scales is None:
            return self.backbone.generate(frames, selection.timestamps, q.prompt)
        return self.backbone.generate_scaled(frames, selection.timestamps, selection.scales, q.prompt)
