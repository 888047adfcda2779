"""Parity of the harness's KFS-Bench evidence recall (tasks/evidence.py) with KFS-Bench's own eval.py.

KFS-Bench's eval.py prints, for a result file of per-question frame timestamps, the mean Scene Hit Rate over the
questions its annotation file has. This script runs that eval.py (imported from a path given here; fetched code
never enters the repository) and the harness's `read_scenes` + `scene_recall` on the same files, and compares the
mean and every question's value (recomputed by the harness for the questions eval.py scores). Dev only, not CI.

    python scripts/parity_kfs.py --kfs-dir DIR_OF_KFS_BENCH_CHECKOUT
        [--pair lvb_anno.csv qwen_7b_64_lvb_results.json] [--pair vidmme_anno.csv qwen_7b_64_vidmme_results.json]
"""
from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import json
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tasks.evidence import read_scenes, scene_recall  # noqa: E402

DEFAULT_PAIRS = [("lvb_anno.csv", "qwen_7b_64_lvb_results.json"),
                 ("vidmme_anno.csv", "qwen_7b_64_vidmme_results.json")]


def official_shr(eval_py: Path, anno: Path, results: Path) -> float:
    """eval.py's printed "Scene Hit Rate" for the pair (its main() prints; four decimals)."""
    spec = importlib.util.spec_from_file_location("kfs_eval", eval_py)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        module.main(argparse.Namespace(anno_file=str(anno), result_file=str(results)))
    return float(re.search(r"Scene Hit Rate = ([0-9.]+)", out.getvalue()).group(1))


def eval_rule_per_question(anno: Path, results: list[dict]) -> dict[str, float]:
    """Per-question scene hit by eval.py's rule, written out here (eval.py prints only the mean): a scene is hit when
    a timestamp t has start <= t <= end + 1 in one of its rows."""
    import csv
    import numpy as np
    scenes: dict = {}
    with open(anno) as f:
        for row in csv.DictReader(f):
            clock = [float(p) for p in row["start"].split(":")], [float(p) for p in row["end"].split(":")]
            start, end = (sum(v * 60 ** i for i, v in enumerate(reversed(c))) for c in clock)
            scenes.setdefault(row["id"], {}).setdefault(row["scene_id"], []).append([start, end + 1])
    out = {}
    for res in results:
        if res["id"] in scenes:
            ts = np.array(res["frame_timestamps"])
            hits = [np.any((ts[:, None] >= np.array(s)[:, 0]) & (ts[:, None] <= np.array(s)[:, 1]))
                    for s in scenes[res["id"]].values()]
            out[res["id"]] = float(np.mean(hits))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kfs-dir", required=True, help="a checkout of NEC-VID/KFS-Bench (eval.py and the files)")
    ap.add_argument("--pair", nargs=2, action="append", metavar=("ANNO", "RESULTS"), help="files under --kfs-dir")
    args = ap.parse_args()
    root = Path(args.kfs_dir)
    bad = 0
    for anno_name, results_name in args.pair or DEFAULT_PAIRS:
        anno, results_path = root / anno_name, root / results_name
        results = json.loads(results_path.read_text())
        scenes = read_scenes(anno)
        ours = {r["id"]: scene_recall(scenes[r["id"]], r["frame_timestamps"]) for r in results if r["id"] in scenes}
        theirs = eval_rule_per_question(anno, results)
        mismatched = [q for q in ours if abs(ours[q] - theirs[q]) > 1e-12]
        mean = sum(ours.values()) / len(ours)
        printed = official_shr(root / "eval.py", anno, results_path)
        same_mean = f"{mean:.4f}" == f"{printed:.4f}"
        print(f"{anno_name}: {len(ours)} questions scored; per-question mismatches {len(mismatched)}; mean scene hit "
              f"rate harness {mean:.6f}, eval.py prints {printed:.4f} ({'equal' if same_mean else 'DIFFERENT'} at 4 "
              f"decimals)")
        bad += len(mismatched) + (not same_mean)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
