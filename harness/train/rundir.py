"""The files of a TSPO training run directory (`cfg.out`), and the per-step log line:

    config.json       every hyper-parameter, the data source, the resolved step count, versions
    events.jsonl      one line per start or resume of the run
    train.jsonl       one line per optimizer step: rewards, advantage and selection statistics, loss, lr, tau
    rollouts.jsonl    one line per question and step: each rollout's frames, answer and rewards
    watch.jsonl       the watched questions' logits every `watch_every` steps (for `harness train plot`)
    checkpoints/step-NNNNNN/          agent, optimizer, scheduler, step, RNG states, data order: state.safetensors
                      (the tensors) + state.json (the rest), never a pickle (harness.train.checkpoint)
    agent/            the trained agent in the TSPO-0.4B layout (CLIPModel weights + selector.*): tspo:agent=FOLDER
    selector.safetensors   the agent alone (bare keys), for tspo:agent=FILE,encoder=...
    tb/               TensorBoard scalars, when tensorboard is installed
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from harness.errors import HarnessError
from harness.util.fileio import atomic_write

TRAIN_LOG, ROLLOUTS, WATCH, CONFIG, EVENTS = "train.jsonl", "rollouts.jsonl", "watch.jsonl", "config.json", \
    "events.jsonl"
AGENT, SELECTOR_FILE = "agent", "selector.safetensors"


def jsonl_append(path: Path, rows: list[dict]) -> None:
    if rows:
        with open(path, "a", encoding="utf-8") as f:
            f.write("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
            f.flush()


def truncate_jsonl(path: Path, keep) -> None:
    """Keep only the complete lines whose record satisfies `keep` (a resume redoes the steps after the
    checkpoint; a killed writer's partial last line is dropped)."""
    if not path.exists():
        return
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines(keepends=True):
        if not line.endswith("\n"):
            break
        try:
            if keep(json.loads(line)):
                rows.append(line)
        except json.JSONDecodeError:
            break
    atomic_write(path, "".join(rows))


def claim(run_dir: Path, identity_hash: str, record) -> None:
    """A new run: write config.json (`record()` plus the identity hash). An existing one: check it is the same
    training configuration, so that a resume continues the same trajectory."""
    path = run_dir / CONFIG
    if path.exists():
        try:
            old = json.loads(path.read_text())
        except (OSError, ValueError) as e:
            raise HarnessError(f"{path}: unreadable ({' '.join(str(e).split())})") from None
        if old.get("identity_hash") != identity_hash:
            raise HarnessError(f"{run_dir} holds a run with a different training configuration; use another --out")
        return
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write(path, json.dumps({**record(), "identity_hash": identity_hash}, indent=2, sort_keys=True,
                                  default=str) + "\n")


def read_log(run_dir, name: str = TRAIN_LOG) -> list[dict]:
    from harness.store.runs import read_jsonl

    return read_jsonl(Path(run_dir) / name)


def _stats(values) -> dict:
    v = np.asarray(values, np.float64)
    if v.size == 0:
        return {"mean": None, "std": None, "min": None, "max": None}
    return {"mean": float(v.mean()), "std": float(v.std()), "min": float(v.min()), "max": float(v.max())}


def _mean(values):
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else None


def step_row(step: int, epoch: float, lr: float, tau: float, records: list[dict], grad_norm, seconds: float) -> dict:
    """The train.jsonl line of one optimizer step (`step` counted from 0) from its questions' rollout records."""
    done = [r for r in records if "error" not in r]
    acc = [v for r in done for v in r["accuracy"]]
    tmp = [v for r in done if r["temporal"] is not None for v in r["temporal"]]
    tot = [v for r in done for v in r["total"]]
    adv = [v for r in done for v in r["advantages"]]
    return {
        "step": step + 1, "epoch": epoch, "lr": lr, "tau": tau,
        "questions": len(done), "skipped": len(records) - len(done),
        "loss": _mean([r["loss"] for r in done]),
        "reward": {"accuracy": _mean(acc), "temporal": _mean(tmp), "total": _mean(tot)},
        "reward_std": _mean([float(np.std(r["total"], ddof=1)) for r in done]),
        "advantage": {**_stats(adv), "abs_mean": _mean(np.abs(adv).tolist()) if adv else None},
        "selected": {"in_ground_truth": _mean(tmp), "unique_sets": _mean([r["unique_sets"] for r in done]),
                     "mean_position": _mean([r["mean_position"] for r in done]),
                     "spread": _mean([r["spread"] for r in done]),
                     "entropy": _mean([r["entropy"] for r in done]),
                     "max_prob": _mean([r["max_prob"] for r in done])},
        "grad_norm": grad_norm, "seconds": seconds,
    }


def open_tensorboard(folder: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard is optional: the JSONL logs hold everything
        return None
    return SummaryWriter(str(folder))


def tensorboard_step(writer, row: dict) -> None:
    """A train.jsonl line as TensorBoard scalars."""
    flat = {"loss": row["loss"], "lr": row["lr"], "tau": row["tau"], "grad_norm": row["grad_norm"],
            **{f"reward/{k}": v for k, v in row["reward"].items()},
            **{f"advantage/{k}": v for k, v in row["advantage"].items()},
            **{f"selected/{k}": v for k, v in row["selected"].items()}}
    for key, value in flat.items():
        if value is not None:
            writer.add_scalar(key, value, row["step"])
    writer.flush()
