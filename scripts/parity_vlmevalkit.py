"""Parity of the harness's VLMEvalKit protocol with VLMEvalKit's own functions (docs/vlmevalkit.md).

    python scripts/parity_vlmevalkit.py VLMEVALKIT_CHECKOUT [--data ../shared/data/tspo-release] [--json OUT]

(scripts/parity_vlmevalkit.sh makes the checkout from the fetched mirror and runs this.) It imports VLMEvalKit's
dataset classes from the checkout (heavy package imports stubbed: scripts/vlmevalkit_stubs.py) and counts
agreements, never in CI:

* prompts: VLMEvalKit's `build_prompt(row, video_llm=True)` against the harness's `messages(sample)` for every record
  of videomme.json (with and without subtitles, no .srt present), lvb_val.json and mlvu.json (MLVU's rows are
  VLMEvalKit's layout from tsv/MLVU.tsv, joined to mlvu.json on video, question and candidates);
* frame indices: its `save_video_frames` (decord faked: a frame count and fps) against the grid rule `nframe:K`, the
  sampler `uniform:variant=vlmevalkit` on the grid `all`, the grid rule `fps:F` and the subtitle frame rule;
* scoring: its own `evaluate(..., model="exact_matching")` (and MLVU's composite M-Avg) on a table of awkward
  answers x 10 records per benchmark, per-row score and letter, and the rating / accuracy table.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

import vlmevalkit_stubs as stubs  # noqa: E402
from vlmevalkit_corpus import answers_for  # noqa: E402


class Count:
    def __init__(self):
        self.counts: dict[str, list[int]] = {}
        self.examples: dict[str, list] = {}

    def add(self, name: str, ok: bool, example=None):
        c = self.counts.setdefault(name, [0, 0])
        c[0] += 1
        c[1] += not ok
        if not ok and len(self.examples.setdefault(name, [])) < 3:
            self.examples[name].append(example)

    def note(self, name: str, ok: bool, example=None):
        """A fact about the data, not a harness mismatch: reported, not in the total."""
        self.add("(data) " + name, ok, example)

    def report(self) -> dict:
        return {k: {"checked": n, "mismatches": bad, "examples": self.examples.get(k, [])}
                for k, (n, bad) in self.counts.items()}


def strip_video(messages):
    return [{"type": "video"} if m["type"] == "video" else m for m in messages]


def prompts(c: Count, data: Path):
    from vlmeval.dataset.longvideobench import LongVideoBench as VLB
    from vlmeval.dataset.mlvu import MLVU_MCQ
    from vlmeval.dataset.videomme import VideoMME as VMME
    from tasks.longvideobench import LongVideoBench
    from tasks.mlvu import MLVU
    from tasks.videomme import VideoMME

    for subs in (False, True):
        ours = VideoMME(annotations=str(data / "jsons/videomme.json"), protocol="vlmevalkit", subtitles=subs,
                        subtitle_frames="nframe:8" if subs else None, subtitle_root="/nonexistent")
        theirs = stubs.bare(VMME, use_subtitle=subs)
        for s in ours.load_samples():
            r = s.metadata
            row = pd.Series({"video": r["videoID"], "question": s.question, "candidates": str(list(r["options"])),
                             "subtitle_path": f"./subtitle/{r['videoID']}.srt"})
            c.add(f"prompt videomme{' subtitles' if subs else ''}",
                  strip_video(theirs.build_prompt(row, video_llm=True)) == ours.messages(s), s.id)
    ours = LongVideoBench(annotations=str(data / "jsons/lvb_val.json"), protocol="vlmevalkit")
    theirs = stubs.bare(VLB, use_subtitle=False)
    theirs.save_video_frames = lambda *a, **k: ([], [], {"fps": 1.0, "n_frames": 1})
    for s in ours.load_samples():
        row = pd.Series({"question": s.question, "candidates": str(list(s.options)),
                         "video_path": "./videos/" + s.metadata["video_path"]})
        c.add("prompt longvideobench", strip_video(theirs.build_prompt(row, video_llm=True)) == ours.messages(s),
              s.id)
    ours = MLVU(annotations=str(data / "jsons/mlvu.json"), protocol="vlmevalkit")
    # the TSV holds no newlines: 4 stems that end in "\n" in mlvu.json end in " " there, so join on stripped text
    by_key = {(s.metadata["video_name"], s.question.strip(), tuple(s.options)): s for s in ours.load_samples()}
    theirs = stubs.bare(MLVU_MCQ)
    tsv = pd.read_csv(data / "tsv/MLVU.tsv", sep="\t", quoting=3, keep_default_na=False)  # 3: QUOTE_NONE
    joined = 0
    for _, t in tsv.iterrows():
        cands = eval(t["candidates"])  # the TSV's own python-literal lists, as VLMEvalKit reads them
        s = by_key.get((t["video_name"], t["question"].strip(), tuple(cands)))
        if s is None:
            c.add("prompt mlvu (join)", False, t["index"])
            continue
        joined += 1
        c.note("mlvu question: TSV text equal to the mlvu.json stem (else they differ in trailing whitespace only)",
              t["question"] == s.question, (s.id, t["question"], s.question))
        row = pd.Series({"question": s.question, "candidates": t["candidates"], "answer": t["answer"],
                         "prefix": "./MLVU/video/" + t["task_name"], "video": t["video_name"]})
        c.add("prompt mlvu", strip_video(theirs.build_prompt(row, video_llm=True)) == ours.messages(s), s.id)
        c.add("mlvu gold letter", s.answer_letter == chr(65 + cands.index(t["answer"])), s.id)
    c.add("prompt mlvu (every record joined once)", joined == len(by_key) == len(tsv), joined)


def frames(c: Count):
    from vlmeval.dataset.videomme import VideoMME as VMME
    from harness.video.grid import grid_indices
    from samplers.uniform import Uniform
    from tasks.videomme import vlmevalkit_frame_indices

    counts = (1, 2, 3, 7, 10, 31, 64, 65, 100, 129, 250, 1000, 1799, 1800, 4321, 7200, 9999, 54321, 108000, 215892)
    rates = (8.0, 12.5, 23.976023976023978, 24.0, 25.0, 29.97002997002997, 30.0, 50.0, 59.94005994005994, 60.0)
    for n in counts:
        for k in (1, 2, 4, 8, 16, 32, 48, 64, 128, 256):
            theirs = stubs.bare(VMME, nframe=k, fps=-1)
            stubs._FakeReader.VIDEOS["v.mp4"] = (n, 30.0)
            idx = theirs.save_video_frames("v")[1]
            c.add("frames nframe (subtitle rule)", vlmevalkit_frame_indices(n, 30.0, f"nframe:{k}") == idx, (n, k))
            if len(set(idx)) == k:  # no repeats: the harness's grid and sampler give the same list
                c.add("frames nframe:K grid", grid_indices(n, 30.0, f"nframe:{k}").tolist() == idx, (n, k))
                c.add("frames uniform:variant=vlmevalkit on grid all",
                      Uniform("vlmevalkit").positions(n, k, {}).tolist() == idx, (n, k))
            else:
                c.add("frames nframe:K with K >= N (repeats dropped by the grid: by design)",
                      grid_indices(n, 30.0, f"nframe:{k}").tolist() == sorted(set(idx)), (n, k))
        for rate in rates:
            for f in (0.25, 0.5, 1.0, 2.0, 4.0):
                theirs = stubs.bare(VMME, nframe=0, fps=f)
                stubs._FakeReader.VIDEOS["v.mp4"] = (n, rate)
                idx = theirs.save_video_frames("v")[1]
                c.add("frames fps (subtitle rule)", vlmevalkit_frame_indices(n, rate, f"fps:{f}") == idx, (n, rate, f))
                c.add("frames fps:F grid", grid_indices(n, rate, f"fps:{f}").tolist() == idx, (n, rate, f))


def pick(samples, n=10):
    return [samples[int(i)] for i in np.linspace(0, len(samples) - 1, n)]


def scoring(c: Count, data: Path):
    from vlmeval.dataset.longvideobench import LongVideoBench as VLB
    from vlmeval.dataset.mlvu import MLVU as VMLVU, MLVU_MCQ
    from vlmeval.dataset.utils import longvideobench as lvb_utils, videomme as vmme_utils
    from vlmeval.dataset.video_concat_dataset import ConcatVideoDataset
    from tasks.longvideobench import LongVideoBench
    from tasks.mlvu import MLVU
    from tasks.videomme import VideoMME

    def rows_for(task, samples):
        table, rows = [], []
        for s in samples:
            for a in answers_for(s):
                p = task.score(s, a)
                table.append((s, a, p))
                rows.append({"sample_id": s.id, "categories": dict(s.categories), "answer": s.answer_letter,
                             "prediction": {"correct": p.correct, "raw_text": a}})
        return table, rows

    # Video-MME
    task = VideoMME(annotations=str(data / "jsons/videomme.json"), protocol="vlmevalkit")
    table, rows = rows_for(task, pick(task.load_samples()))
    df = pd.DataFrame([{"index": i, "video": s.metadata["videoID"], "question": s.question,
                        "candidates": str(list(s.metadata["options"])), "answer": s.answer_letter,
                        "duration": s.categories["duration"], "domain": s.categories["domain"],
                        "sub_category": s.categories["sub_category"], "task_type": s.categories["task_type"],
                        "prediction": a} for i, (s, a, _) in enumerate(table)])
    check_mcq(c, "videomme", VMME_eval(df), table, vmme_utils, df, task.vlmevalkit_metrics(rows)["rating"])
    # LongVideoBench
    task = LongVideoBench(annotations=str(data / "jsons/lvb_val.json"), protocol="vlmevalkit")
    table, rows = rows_for(task, pick(task.load_samples()))
    df = pd.DataFrame([{"index": i, "question": s.question, "candidates": str(list(s.options)),
                        "correct_choice": s.answer, "duration_group": int(s.categories["duration_group"]),
                        "question_category": s.categories["question_category"], "prediction": a}
                       for i, (s, a, _) in enumerate(table)])
    stubs.FILES["lvb.xlsx"] = df
    rating = VLB.evaluate("lvb.xlsx", model="exact_matching")
    check_mcq(c, "longvideobench", (rating, stubs.FILES["lvb_score.xlsx"]), table, lvb_utils, df,
              task.vlmevalkit_metrics(rows)["rating"])
    # MLVU: MLVU_MCQ.evaluate per row, then the composite's table (M-Avg) through ConcatVideoDataset.evaluate
    task = MLVU(annotations=str(data / "jsons/mlvu.json"), protocol="vlmevalkit")
    table, rows = rows_for(task, pick(task.load_samples(), 70))
    df = pd.DataFrame([{"index": i, "original_index": i, "SUB_DATASET": "MLVU_MCQ", "task_type": s.categories["task_type"],
                        "question": s.question, "candidates": str(list(s.options)), "answer": s.options[s.answer],
                        "prediction": a} for i, (s, a, _) in enumerate(table)])
    stubs.FILES["pred_MLVU.xlsx"] = df
    ConcatVideoDataset.__init__ = lambda self, dataset, **kw: None
    composite = stubs.bare(VMLVU)
    VMLVU.__init__(composite, dataset="MLVU")
    composite.dataset_name, composite.datasets, composite.dataset_map = "MLVU", ["MLVU_MCQ"], {"MLVU_MCQ": MLVU_MCQ}
    result = VMLVU.evaluate(composite, "pred_MLVU.xlsx", model="exact_matching")
    scores = stubs.FILES["pred_MLVU_MCQ_score.xlsx"]
    for (s, a, p), score in zip(table, scores["score"]):
        mine = -1 if "Failed to obtain answer via API" in a else int(p.correct)  # its API-failure score
        c.add("score mlvu (per answer)", int(score) == mine, (s.id, a, int(score), mine))
    ours = task.vlmevalkit_metrics(rows)["acc"]
    for _, r in result.iterrows():
        if r["task"] == "G-Avg":
            c.add("mlvu G-Avg: theirs nan without open-ended questions, ours null", np.isnan(r["acc"])
                  and ours["G-Avg"]["acc"] is None, r.to_dict())
            continue
        mine = ours[r["task"]]
        c.add("mlvu acc table (success, overall, acc)", (int(r["success"]), int(r["overall"]), float(r["acc"])) ==
              (mine["success"], mine["overall"], mine["acc"]), (r.to_dict(), mine))


def VMME_eval(df):
    from vlmeval.dataset.videomme import VideoMME as VMME

    stubs.FILES["vmme.xlsx"] = df
    rating = VMME.evaluate("vmme.xlsx", model="exact_matching")
    return rating, stubs.FILES["vmme_score.xlsx"]


def check_mcq(c: Count, name, result, table, utils, df, our_rating):
    rating, scores = result
    for (s, a, p), score, (_, line) in zip(table, scores["score"], df.iterrows()):
        c.add(f"score {name} (per answer)", int(score) == int(p.correct), (s.id, a))
        letter = utils.extract_characters_regex(str(a))
        if letter == "":
            letter = utils.extract_option(None, line.to_dict(), name)
        c.add(f"letter {name} (per answer)", (None if letter == "Z" else letter) == p.parsed, (s.id, a, letter))
    theirs = json.loads(json.dumps({str(k): v for k, v in rating.items()}))
    c.add(f"rating {name}", theirs == our_rating, (theirs.get("overall"), our_rating.get("overall")))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("vlmevalkit", help="root of a VLMEvalKit checkout (holding vlmeval/)")
    ap.add_argument("--data", default=str(ROOT.parent.parent / "shared" / "data" / "tspo-release"))
    ap.add_argument("--json", help="write the counts here")
    args = ap.parse_args(argv)
    stubs.install(os.path.abspath(args.vlmevalkit))
    c = Count()
    prompts(c, Path(args.data))
    frames(c)
    scoring(c, Path(args.data))
    report = c.report()
    for k, v in report.items():
        print(f"{k}: {v['checked']} checked, {v['mismatches']} mismatches" +
              (f"  e.g. {v['examples']}" if v["mismatches"] else ""))
    total = sum(v["mismatches"] for k, v in report.items() if not k.startswith("(data)"))
    print(f"TOTAL: {sum(v['checked'] for v in report.values())} checked, {total} mismatches")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1, default=str))
    return 1 if total else 0


if __name__ == "__main__":
    sys.exit(main())
