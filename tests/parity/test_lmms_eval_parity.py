"""Parity with lmms-eval 0.7.3 itself: its own task functions against ours, on every real annotation record.

Runs only where `lmms_eval` is importable (the separate `.venv-parity`, made by `scripts/parity.sh`; see
docs/parity.md) and the TSPO release files are in ../shared/data/tspo-release. Nothing from lmms-eval is copied:
its YAMLs are loaded with its own loader, its per-model prompt settings resolved by its own
`ConfigurableTask._prepare_model_specific_config`, and its own `doc_to_text` / `process_results` are called.

* Prompts: for every record, lmms-eval's `doc_to_text(row, kwargs)` with the row shaped as lmms-eval's dataset row,
  for each model key (our prompt style "default" is lmms-eval's `qwen2_5_vl`, which no YAML names, so it gets the
  `default` entry; "llava_vid" is `llava_vid`), must equal our `task.prompt(sample, style)` exactly.
* Scores: a corpus of model answers (clean, awkward and adversarial) x every record: lmms-eval's `process_results`
  (after its default reasoning-tag stripping) against our lmms-eval parser's letter and our correctness. Where
  LongVideoBench would pick a random letter, `random` in lmms-eval's module is replaced by a sentinel: we must
  record `parse_failed` (no letter, wrong) there; those cases are counted.
* LongVideoBench's test split: lmms-eval's `longvideobench_test_v` prompts against ours with `split=test`, on the
  validation questions rewritten in the test files' layout (no correct_choice), and the id its `process_results`
  submits each answer under.

Set PARITY_REPORT=path to write the counts as JSON; `pytest -s` prints them.
"""
from __future__ import annotations

import copy
import importlib
import json
import os
from collections import defaultdict
from pathlib import Path
from types import SimpleNamespace

import pytest

lmms_eval = pytest.importorskip("lmms_eval", reason="lmms-eval is not installed here (scripts/parity.sh)")

from lmms_eval import utils as lmms_utils  # noqa: E402
from lmms_eval.api.reasoning import parse_reasoning_tags_config, strip_reasoning_tags  # noqa: E402
from lmms_eval.api.task import ConfigurableTask  # noqa: E402

from harness.records import PARSE_FAILED  # noqa: E402
from harness.registry import TASKS  # noqa: E402
from tests.release_data import RELEASE  # noqa: E402

DATA = RELEASE / "jsons"
if not DATA.is_dir():
    pytest.skip("TSPO release files not found (tests/release_data.py)", allow_module_level=True)

LMMS_TASKS = Path(lmms_eval.__file__).parent / "tasks"
# our prompt style -> the lmms-eval --model name it stands for
MODEL_OF_STYLE = {"default": "qwen2_5_vl", "llava_vid": "llava_vid"}
# the transformers families (backbones/hf): their prompt style is the lmms-eval --model name itself
HF_STYLES = ["qwen2_vl", "qwen3_vl", "llava_onevision", "llava_hf", "internvl_hf", "huggingface"]
# lmms-eval's CLI default for --reasoning_tags (applied to every response before process_results)
REASONING_TAGS = '[["<think>", "</think>"], ["<analysis>", "</analysis>"]]'
RANDOM = "<random.choice>"
SHOW = 8  # mismatches shown in a failure message

REPORT: dict = defaultdict(dict)


@pytest.fixture(scope="module", autouse=True)
def _report():
    yield
    lines = ["", "lmms-eval 0.7.3 parity"]
    for bench, parts in REPORT.items():
        for part, counts in parts.items():
            lines.append(f"  {bench:15s} {part:22s} " + ", ".join(f"{k}={v}" for k, v in counts.items()))
    print("\n".join(lines))
    if os.environ.get("PARITY_REPORT"):
        Path(os.environ["PARITY_REPORT"]).write_text(json.dumps(REPORT, indent=2, sort_keys=True) + "\n")


# -- lmms-eval's side ------------------------------------------------------------------------------------------------
def lmms_config(yaml_rel: str) -> dict:
    """A task YAML through lmms-eval's own loader (`!function` entries become its functions)."""
    return lmms_utils.load_yaml_config(yaml_path=str(LMMS_TASKS / yaml_rel), mode="full")


def lmms_kwargs(config: dict, model_name: str) -> dict | None:
    """lmms_eval_specific_kwargs for a model, resolved by lmms-eval's own ConfigurableTask code."""
    stub = SimpleNamespace(model_name=model_name, config=SimpleNamespace(
        lmms_eval_specific_kwargs=copy.deepcopy(config.get("lmms_eval_specific_kwargs")),
        model_specific_target_kwargs=None, model_specific_generation_kwargs=None))
    ConfigurableTask._prepare_model_specific_config(stub)
    return stub.lmms_eval_specific_kwargs


def lmms_prompt(config: dict, row: dict, model_name: str) -> str:
    kwargs = lmms_kwargs(config, model_name)
    doc_to_text = config["doc_to_text"]
    # as ConfigurableTask.doc_to_text calls it; a fresh copy each time (lvbench's function writes into it)
    return doc_to_text(copy.deepcopy(row), kwargs) if kwargs is not None else doc_to_text(copy.deepcopy(row))


LMMS_TAGS = parse_reasoning_tags_config(cli_value=REASONING_TAGS)


def lmms_filtered(text: str) -> str:
    """The response as process_results sees it (lmms-eval strips reasoning tags first, by default)."""
    return strip_reasoning_tags(text, LMMS_TAGS)


# -- our side --------------------------------------------------------------------------------------------------------
def our_task(name: str, annotations, tmp_path, **kw):
    importlib.import_module(f"tasks.{name}")  # registers it whether or not tasks/__init__ imports it yet
    return TASKS.create(name, annotations=str(annotations), video_root=str(tmp_path / "videos"), **kw)


def read_json(name):
    return json.loads((DATA / name).read_text())


# -- rows shaped as lmms-eval's datasets --------------------------------------------------------------------------
def lvb_rows():
    """longvideobench/LongVideoBench parquet rows: option0..option4, "N/A" where a question has fewer options."""
    rows = []
    for r in read_json("lvb_val.json"):
        row = {k: v for k, v in r.items() if k != "candidates"}
        for i in range(5):
            row[f"option{i}"] = r["candidates"][i] if i < len(r["candidates"]) else "N/A"
        rows.append(row)
    return rows


def lvbench_rows(with_options: bool = False):
    """Per-question rows of lmms-eval/LVBench from THUDM's video_info.meta.jsonl (options inline in `question`).
    `with_options`: the other possible parquet layout, a stem and an `options` list (lmms-eval 0.7.2+ appends it)."""
    rows = []
    for line in (DATA / "video_info.meta.jsonl").read_text().splitlines():
        video = json.loads(line)
        for qa in video["qa"]:
            row = {"video_path": f"{video['key']}.mp4", "key": video["key"], "type": video["type"],
                   "uid": str(qa["uid"]), "question": qa["question"], "answer": qa["answer"],
                   "question_type": qa["question_type"], "time_reference": qa["time_reference"]}
            if with_options:
                stem, *opts = qa["question"].split("\n(")
                row["question"], row["options"] = stem, [o.split(") ", 1)[1] for o in opts]
            rows.append(row)
    return rows


BENCHES = {
    # name: (our task, lmms-eval yaml, annotation file, rows, id of a row, extra task kwargs)
    "longvideobench": ("longvideobench", "longvideobench/longvideobench_val_v.yaml", "lvb_val.json",
                       lvb_rows, lambda r: r["id"], {}),
    "mlvu": ("mlvu", "mlvu/mlvu_dev.yaml", "mlvu.json", lambda: read_json("mlvu.json"),
             lambda r: r["question_id"], {}),
    "videomme": ("videomme", "videomme/videomme.yaml", "videomme.json", lambda: read_json("videomme.json"),
                 lambda r: r["question_id"], {}),
    "lvbench": ("lvbench", "lvbench/lvbench.yaml", "video_info.meta.jsonl", lvbench_rows,
                lambda r: f"{r['key']}_{r['uid']}", {}),
}


def paired(bench: str, tmp_path, annotations=None, rows=None):
    """(lmms-eval config, [(row, our sample)]) joined by id, asserting both sides hold the same records."""
    task_name, yaml_rel, ann, make_rows, row_id, kw = BENCHES[bench]
    task = our_task(task_name, annotations or DATA / ann, tmp_path, **kw)
    samples = {s.id: s for s in task.load_samples()}
    rows = rows if rows is not None else make_rows()
    assert len(samples) == len(rows) and set(samples) == {row_id(r) for r in rows}
    return task, lmms_config(yaml_rel), [(r, samples[row_id(r)]) for r in rows]


# -- prompts ---------------------------------------------------------------------------------------------------------
def check_prompts(bench, task, config, pairs, styles, label="prompts"):
    mismatches, compared = [], 0
    for style in styles:
        model = MODEL_OF_STYLE.get(style, style)
        for row, sample in pairs:
            expected, got = lmms_prompt(config, row, model), task.prompt(sample, style)
            compared += 1
            if expected != got:
                mismatches.append(f"{sample.id} [{style}]\n  lmms-eval: {expected!r}\n  ours:      {got!r}")
    REPORT[bench][label] = {"records": len(pairs), "styles": "+".join(styles), "compared": compared,
                            "mismatches": len(mismatches)}
    assert not mismatches, f"{len(mismatches)} prompt mismatches, first:\n" + "\n".join(mismatches[:SHOW])


@pytest.mark.parametrize("bench", list(BENCHES))
def test_prompts_match_lmms_eval_on_every_record(bench, tmp_path):
    task, config, pairs = paired(bench, tmp_path)
    styles = ["default", "llava_vid"] + {"mlvu": ["plm"], "videomme": ["gpt4v"]}.get(bench, []) + HF_STYLES
    check_prompts(bench, task, config, pairs, styles)


def test_longvideobench_prompts_from_hugging_face_shaped_rows(tmp_path):
    """Our loader on the parquet layout (option0..4 with "N/A") gives the same prompts."""
    rows = lvb_rows()
    path = tmp_path / "lvb_rows.json"
    path.write_text(json.dumps(rows))
    task, config, pairs = paired("longvideobench", tmp_path, annotations=path, rows=rows)
    check_prompts("longvideobench", task, config, pairs, ["default", "llava_vid"], "prompts (parquet rows)")


def test_lvbench_prompts_with_an_options_column(tmp_path):
    """If lmms-eval/LVBench rows carry an `options` list (stem-only question), lmms-eval appends "(A) ..." lines."""
    rows = lvbench_rows(with_options=True)
    path = tmp_path / "lvbench_rows.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    task, config, pairs = paired("lvbench", tmp_path, annotations=path, rows=rows)
    check_prompts("lvbench", task, config, pairs, ["default", "llava_vid"], "prompts (options column)")


# -- Video-MME with subtitles: stand-in videos and SRT files under a temporary HF_HOME ---------------------------------
def write_video(path: Path, frames: int, fps: float):
    import cv2
    import numpy as np
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (32, 32))
    for i in range(frames):
        writer.write(np.full((32, 32, 3), i % 255, dtype=np.uint8))
    writer.release()


def srt_time(t: float) -> str:
    ms = int(round(t * 1000))
    return f"{ms // 3600000:02d}:{ms // 60000 % 60:02d}:{ms // 1000 % 60:02d},{ms % 1000:03d}"


def write_srt(path: Path, seconds: float, step: float, seed: int):
    """Many short blocks (so the de-duplicated index set is large and not in sorted order), some without the font
    tag, one repeated time range, multi-line texts."""
    import random
    rng = random.Random(seed)
    blocks, t, n = [], 0.0, 0
    while t < seconds:
        n += 1
        end = t + step * rng.choice([0.5, 1.0, 1.5])
        text = f'<font color="white" size=".72c">line {n} at {t:.1f}s</font>'
        if n % 7 == 0:
            text = f"plain line {n}"
        if n % 11 == 0:
            text += f'\n<font color="white" size=".72c">second line {n}</font>'
        blocks.append(f"{n}\n{srt_time(t)} --> {srt_time(end)}\n{text}")
        if n == 5:  # the same time range again: lmms-eval's dict keeps the first position, the last text
            blocks.append(f"{n}b\n{srt_time(t)} --> {srt_time(end)}\n<font color=\"white\" size=\".72c\">again</font>")
        t = end
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n\n".join(blocks) + "\n\n", encoding="utf-8")


def test_videomme_subtitle_prompts_match_lmms_eval(tmp_path, monkeypatch):
    records = read_json("videomme.json")
    chosen = {}  # six videos, three questions each
    for r in records:
        if len(chosen) < 6 or r["videoID"] in chosen:
            chosen.setdefault(r["videoID"], []).append(r)
    home = tmp_path / "hf"
    monkeypatch.setenv("HF_HOME", str(home))  # lmms-eval's utils read it when its YAML is loaded, below
    data, subs = home / "videomme" / "data", home / "videomme" / "subtitle"
    for n, vid in enumerate(chosen):
        frames, fps = [(1200, 10.0), (300, 25.0), (2000, 29.97), (90, 30.0), (600, 12.0), (500, 10.0)][n]
        ext = ".mkv" if n == 4 else ".mp4"  # lmms-eval asks OpenCV about <id>.mp4 even for .mkv: no subtitles
        write_video(data / f"{vid}{ext}", frames, fps)
        if n != 5:  # the last video has no .srt: "No subtitles available"
            write_srt(subs / f"{vid}.srt", frames / fps, [0.2, 1.0, 0.1, 0.5, 0.3, 1][n], seed=n)
    rows = [r for rs in chosen.values() for r in rs]
    path = tmp_path / "videomme_subset.json"
    path.write_text(json.dumps(rows))
    task = our_task("videomme", path, tmp_path, subtitles=True)
    task.video_root, task.subtitle_root = data, subs
    task._samples = None
    samples = {s.id: s for s in task.load_samples()}
    config = lmms_config("videomme/videomme_w_subtitle.yaml")
    pairs = [(r, samples[r["question_id"]]) for r in rows]
    check_prompts("videomme", task, config, pairs, ["default", "llava_vid"], "prompts (subtitles)")
    # the cases above really differ: no .srt, an .mkv (empty), and long subtitle blocks in set (not sorted) order
    subtitles = {task.prompt(s, style).split("\n", 1)[1].split("\nSelect the best answer")[0]
                 for _, s in pairs for style in ("default", "llava_vid")}
    assert "No subtitles available" in subtitles and "" in subtitles and len(subtitles) >= 8
    numbers = [[int(w.split()[1]) for w in sub.split("\n") if w.startswith("line ")] for sub in subtitles]
    assert any(n != sorted(n) for n in numbers), "no subtitle text exercised the set-order pitfall"


# -- scores ----------------------------------------------------------------------------------------------------------
FIXED_ANSWERS = [
    "A", "B", "C", "D", "E", "F", "a", "b", "c", "d", "e",
    "B.", "(B)", "B)", "B:", "[B]", "**B**", " (A) ", "D.\n", "C\n\nThe man is holding an umbrella.",
    "Best option: (C)", "Best option: C", "Best option:(A)", "best option: (d)", "Best answer: B",
    "The answer is B.", "The answer is (D)", "The best answer is: A", "The correct answer is E.",
    "Answer: D", "Answer: (B)", "answer: c", "Ans: D.", "Option C", "option c", "The answer is: B) Candles",
    "I think the answer is B, not A", "The answer is B. A is wrong", "A person is walking; the correct option is C",
    "Based on the video, the answer is D.", "Both A and C are plausible, but I choose C", "A or B", "ABCD",
    "C, because the man in the video is holding a red umbrella.", "E. None of the above", "(E)",
    "none of the options fit the content of this video clip very well at all",
    "the video does not show anything like that, so it is hard to tell which one is right",
    "I cannot determine the answer from the video.", "Yes", "No", "1", "2) the second one",
    "", "   ", "\n", "答案是B", "\\boxed{C}", "<answer>D</answer>",
    "<think>It could be A or B.</think>C", "<think>unclosed reasoning about B", "I compared them.</think>D",
    "<analysis>A?</analysis> The answer is B", "<think>x</think><think>y</think>(A)",
    "THE ANSWER IS C", "Answer with the option's letter from the given choices directly. B",
]


def answers_for(sample) -> list[str]:
    """The fixed corpus plus answers built from this sample's options (option text only, mixed forms)."""
    opts = list(sample.options)
    gold = sample.answer if sample.answer is not None else 0
    letter = chr(65 + gold)
    return FIXED_ANSWERS + opts + [
        f"The answer is {opts[gold]}", f"{letter}. {opts[gold]}", f"({letter}) {opts[gold]}", opts[gold].lower(),
        f"{opts[gold]}.", f"Best option: ({letter}) {opts[gold]}", f"{opts[-1]} ({chr(64 + len(opts))})"]


def lmms_scorer(bench: str, config: dict):
    """text -> (letter or "" or RANDOM, correct) through lmms-eval's own process_results."""
    process = config["process_results"]
    if bench == "longvideobench":
        def run(row, text):
            out = process(row, [text])["lvb_acc"]
            return out["parsed_pred"], out["parsed_pred"] == out["answer"]
    elif bench == "mlvu":
        def run(row, text):
            out = process(row, [text])["mlvu_percetion_score"]
            return out["pred_answer"], out["pred_answer"] == out["answer"]
    elif bench == "videomme":
        def run(row, text):
            out = process(row, [text])["videomme_perception_score"]
            assert (out["score"] == 1.0) == (out["pred_answer"] == out["answer"])
            return out["pred_answer"], out["score"] == 1.0
    else:
        extract = process.__globals__["extract_characters_regex"]  # the letter process_results compares

        def run(row, text):
            return extract(text), bool(process(row, [text])["lvbench_score"])
    return run


@pytest.mark.parametrize("bench", list(BENCHES))
def test_scores_match_lmms_eval_on_an_answer_corpus(bench, tmp_path, monkeypatch):
    task, config, pairs = paired(bench, tmp_path)
    assert task.parser == "lmms-eval"  # the default parser is lmms-eval's
    if bench == "longvideobench":  # lmms-eval's random fallback, made visible
        monkeypatch.setitem(config["process_results"].__globals__, "random",
                            SimpleNamespace(choice=lambda choices: RANDOM))
    score = lmms_scorer(bench, config)
    compared, random_cases, mismatches = 0, 0, []
    for row, sample in pairs:
        for text in answers_for(sample):
            expected, expected_correct = score(row, lmms_filtered(text))
            letter = task.parse_all(sample, text)["lmms-eval"]
            prediction = task.score(sample, text)
            compared += 1
            if expected == RANDOM:
                random_cases += 1
                ok = letter is None and prediction.parse_status == PARSE_FAILED and not prediction.correct
            else:
                ok = (letter or "") == expected and prediction.correct == expected_correct and \
                    prediction.parsed == (expected or None)
            if not ok:
                mismatches.append(f"{sample.id} {text!r}: lmms-eval {expected!r} correct={expected_correct}; "
                                  f"ours {letter!r} parsed={prediction.parsed!r} correct={prediction.correct} "
                                  f"({prediction.parse_status})")
    REPORT[bench]["scores"] = {"records": len(pairs), "answers": compared, "mismatches": len(mismatches),
                               **({"lmms_random_fallback": random_cases} if bench == "longvideobench" else {})}
    assert not mismatches, f"{len(mismatches)} score mismatches, first:\n" + "\n".join(mismatches[:SHOW])


# -- LongVideoBench's test split (longvideobench_test_v): no real test annotations here, so the validation questions
# are rewritten in the test files' layout (lvb_test_wo_gt.json: the same fields without correct_choice) -------------
def lvb_test_records() -> list[dict]:
    return [{k: v for k, v in r.items() if k != "correct_choice"} for r in read_json("lvb_val.json")]


@pytest.mark.parametrize("layout", ["file", "parquet rows"])
def test_longvideobench_test_split_prompts_and_submission(layout, tmp_path):
    """Our split=test prompts against lmms-eval's longvideobench_test_v (its own YAML and doc_to_text), on the
    records as lvb_test_wo_gt.json holds them and as option0..4 rows; and the id each answer is submitted under
    (process_results' `submission` entry, which reads correct_choice even on the test split: it is given the
    official dataloader's -1 here) is our sample id."""
    records = lvb_test_records()
    rows = [{**{k: v for k, v in r.items() if k != "candidates"},
             **{f"option{i}": (r["candidates"][i] if i < len(r["candidates"]) else "N/A") for i in range(5)}}
            for r in records]
    path = tmp_path / "lvb_test_wo_gt.json"
    path.write_text(json.dumps(records if layout == "file" else rows))
    task = our_task("longvideobench", path, tmp_path, split="test")
    samples = {s.id: s for s in task.load_samples()}
    assert len(samples) == len(rows) and all(s.answer is None for s in samples.values())
    config = lmms_config("longvideobench/longvideobench_test_v.yaml")
    assert config["test_split"] == "test" and [m["metric"] for m in config["metric_list"]] == ["submission"]
    pairs = [(row, samples[row["id"]]) for row in rows]
    check_prompts("longvideobench", task, config, pairs, ["default", "llava_vid"], f"test split ({layout})")
    if layout == "file":
        process, wrong = config["process_results"], []
        for row, sample in pairs:
            text = f"The answer is {sample.options[0]}"
            if process({**row, "correct_choice": -1}, [text])["submission"] != {sample.id: text}:
                wrong.append(sample.id)
        REPORT["longvideobench"]["test split submission"] = {"records": len(pairs), "mismatches": len(wrong)}
        assert not wrong, f"{len(wrong)} submission ids differ, first: {wrong[:SHOW]}"
