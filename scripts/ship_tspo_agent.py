"""Ship a trained TSPO agent: copy RUN/selector.safetensors to a folder and write training.json beside it (the run's
config, the command, wall time, the reward per tenth of training, and the weights' digest, which the sampler records
as agent_sha256).

    python scripts/ship_tspo_agent.py RUN --command "harness train tspo ..." [--note TEXT] [--out FOLDER]

Without --out it writes nothing and prints where the shipped agent `tspo:agent=mini-tspo` lives; pass that folder
as --out to replace the shipped agent (the package's files change: commit them knowingly).
"""
from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import numpy as np

from harness.shipped import SHIPPED_AGENTS
from harness.train.rundir import CONFIG, EVENTS, SELECTOR_FILE, read_log
from samplers.tspo.weights import read_selector_state, state_digest


def reward_curve(rows: list[dict], parts: int = 10) -> list[dict]:
    """Mean rewards over each tenth of the steps."""
    out = []
    for chunk in np.array_split(np.arange(len(rows)), min(parts, len(rows))):
        part = [rows[i] for i in chunk]
        out.append({"steps": [part[0]["step"], part[-1]["step"]],
                    **{k: round(float(np.mean([r["reward"][k] for r in part])), 4)
                       for k in ("accuracy", "temporal", "total")},
                    "reward_std": round(float(np.mean([r["reward_std"] for r in part])), 4)})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", help="the training run directory (harness train tspo --out)")
    ap.add_argument("--command", required=True, help="the command that made the run, as typed")
    ap.add_argument("--note", default="", help="a remark kept in training.json")
    ap.add_argument("--out", help="folder to write selector.safetensors and training.json to (default: write "
                                  "nothing, print where the shipped agent lives)")
    args = ap.parse_args()
    run = Path(args.run)
    shipped = SHIPPED_AGENTS["mini-tspo"][0]
    if args.out is None:
        print(f"nothing written; the shipped agent mini-tspo is {shipped} (pass --out {shipped.parent} to "
              f"replace it)")
        return
    target = Path(args.out) / shipped.name
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(run / SELECTOR_FILE, target)
    rows = read_log(run)
    events = [json.loads(line) for line in (run / EVENTS).read_text().splitlines() if line.strip()]
    config = json.loads((run / CONFIG).read_text())
    record = {"command": args.command, "note": args.note,
              "agent_sha256": state_digest(read_selector_state(target)),
              "steps": len(rows), "step_seconds": round(sum(r["seconds"] for r in rows), 1),
              "events": events, "reward_by_tenth": reward_curve(rows),
              "config": {k: v for k, v in config.items() if k != "identity"}}
    (target.parent / "training.json").write_text(json.dumps(record, indent=1))
    print(f"shipped {target} ({record['agent_sha256'][:16]}), {len(rows)} steps")


if __name__ == "__main__":
    main()
