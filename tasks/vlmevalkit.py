"""The VLMEvalKit protocol (`protocol=vlmevalkit`, `harness run --protocol vlmevalkit`) for Video-MME (with and without
subtitles), LongVideoBench and MLVU, written from VLMEvalKit's source (open-compass/VLMEvalKit e8e78f05,
`vlmeval/dataset/{videomme,longvideobench,mlvu}.py` and their `utils/`), never imported from it.

Message layout, as its `build_prompt(line, video_llm=True)` gives it (both harness backbones are video-LLMs there):

* Video-MME: text "" (SYS), the video, the template (`TEMPLATE_NOSUB`, or `TEMPLATE_SUB` holding the subtitle lines),
  then ``"Question: " + question + "\\n" + "\\n".join(options) + "\\nAnswer: "`` (options as given, "A. ...").
* LongVideoBench: text "", the video, then ``question + "\\n" + "A. c0\\nB. c1..." + "\\nAnswer with the option's
  letter from the given choices directly."``; VLMEvalKit's subtitle variant interleaves subtitles with image frames
  only, so for a video-LLM it is the same prompt (not offered here).
* MLVU: text `MLVU_SYS` (role system), the video, ``"Question: q\\nOptions:\\n(A) c0\\n(B) c1..."`` (trailing newline
  stripped), then ``"\\nOnly give the best option."``.

The harness's backbones take one text after the frames, so the prompt is the concatenation of the message's text
items in order, with no separator (Qwen2.5-VL's chat template and VLMEvalKit's LLaVA-OneVision wrapper join text
items that way); the one layout difference, recorded in the protocol, is MLVU's system sentence, which VLMEvalKit
puts before the video and the harness after it.

Scoring is `harness.scoring.vlmevalkit` (judge-free). Aggregation follows each `evaluate`/`get_dimension_rating`:
Video-MME and LongVideoBench a rating dict of 0-1 strings with 3 decimals (per duration and overall: the overall
and each category; "nan" for an empty one), MLVU the `_acc.csv` rows (success, overall, acc to 1 decimal) per task
and `M-Avg` = Σsuccess/Σoverall·100 over the 7 multiple-choice tasks. `G-Avg` needs the open-ended questions and a
GPT judge; it is reported as null with that reason.
"""
from __future__ import annotations

import math

from harness.errors import HarnessError
from harness.records import PARSE_FAILED, PARSE_OK, Prediction, Sample
from harness.scoring.vlmevalkit import API_FAILURE, NO_ANSWER, mcq_letter, mlvu_letter

PROTOCOLS = ("lmms-eval", "vlmevalkit")
VLMEVALKIT_COMMIT = "e8e78f05f3080fe28154f2130321f17951c3be94"
PROTOCOL_HELP = "lmms-eval (default) or vlmevalkit: VLMEvalKit's prompts, judge-free matching and aggregation"

_ASK = ("Select the best answer to the following multiple-choice question based on the video. "
        "Respond with only the letter (A, B, C, or D) of the correct option.\n")
TEMPLATE_NOSUB = "\nThese are the frames of a video. " + _ASK
TEMPLATE_SUB = "\nThese are the frames of a video. This video's subtitles are listed below:\n{}\n" + _ASK
LVB_POST = "\nAnswer with the option's letter from the given choices directly."
MLVU_SYS = ("Carefully watch this video and pay attention to every detail. Based on your observations, select the "
            "best option that accurately addresses the question.")
MLVU_POST = "\nOnly give the best option."
MLVU_TASKS = ("plotQA", "needle", "ego", "count", "anomaly_reco", "topic_reasoning", "order")  # M-Avg's tasks

VIDEOMME_DURATIONS = ("short", "medium", "long")
VIDEOMME_CATEGORIES = {
    "domain": ("Knowledge", "Film & Television", "Sports Competition", "Artistic Performance", "Life Record",
               "Multilingual"),
    "sub_category": ("Humanity & History", "Literature & Art", "Biology & Medicine", "Finance & Commerce",
                     "Astronomy", "Geography", "Law", "Life Tip", "Technology", "Animation", "Movie & TV Show",
                     "Documentary", "News Report", "Esports", "Basketball", "Football", "Athletics", "Other Sports",
                     "Stage Play", "Magic Show", "Variety Show", "Acrobatics", "Handicraft", "Food", "Fashion",
                     "Daily Life", "Travel", "Pet & Animal", "Exercise", "Multilingual"),
    "task_type": ("Temporal Perception", "Spatial Perception", "Attribute Perception", "Action Recognition",
                  "Object Recognition", "OCR Problems", "Counting Problem", "Temporal Reasoning", "Spatial Reasoning",
                  "Action Reasoning", "Object Reasoning", "Information Synopsis"),
}
LVB_DURATIONS = ("15", "60", "600", "3600")
LVB_CATEGORIES = ("S2E", "S2O", "S2A", "E2O", "O2E", "T2E", "T2O", "T2A", "E3E", "O3O", "SSS", "SOS", "SAA", "T3E",
                  "T3O", "TOS", "TAA")


def check_protocol(protocol: str, task: str) -> str:
    if protocol not in PROTOCOLS:
        raise HarnessError(f"unknown protocol {protocol!r} for task {task!r} (known: {', '.join(PROTOCOLS)})")
    return protocol


def text(value: str, **extra) -> dict:
    return {"type": "text", "value": value, **extra}


VIDEO = {"type": "video"}


def videomme_messages(question: str, options, subtitles: str | None) -> list[dict]:
    """`subtitles` None: the variant without subtitles; a string (maybe ""): the subtitle template holding it."""
    template = TEMPLATE_NOSUB if subtitles is None else TEMPLATE_SUB.format(subtitles)
    body = "Question: {}\nAnswer: ".format(question + "\n" + "\n".join(options))
    return [text(""), VIDEO, text(template), text(body)]


def longvideobench_messages(question: str, candidates) -> list[dict]:
    lettered = "\n".join(f"{chr(ord('A') + i)}. {c}" for i, c in enumerate(candidates))
    return [text(""), VIDEO, text(question + "\n" + lettered + LVB_POST)]


def mlvu_messages(question: str, candidates) -> list[dict]:
    body = f"Question: {question}\nOptions:\n" + "".join(f"({chr(ord('A') + i)}) {c}\n"
                                                          for i, c in enumerate(candidates))
    return [text(MLVU_SYS, role="system"), VIDEO, text(body.rstrip()), text(MLVU_POST)]


def prompt_of(messages: list[dict]) -> str:
    """The one text the harness's backbones get after the frames: every text item, in order, joined as is."""
    return "".join(m["value"] for m in messages if m["type"] == "text")


def score_vlmevalkit(benchmark: str, sample: Sample, text_: str | None) -> Prediction:
    """Scored as VLMEvalKit's evaluate does without a judge; its "Z" (nothing matched) is recorded as parse_failed."""
    if benchmark == "mlvu":
        letter, right = mlvu_letter(text_, sample.options, sample.answer)
    else:
        letter = mcq_letter(benchmark, text_, sample.question)
        right = sample.answer_letter is not None and letter == sample.answer_letter
    if letter is None or letter == NO_ANSWER:
        return Prediction(text_, None, False, PARSE_FAILED)
    return Prediction(text_, letter, right, PARSE_OK)


# ---------------------------------------------------------------------------------------------------------------
# aggregation


def _score(row: dict) -> int:
    return int(bool(row["prediction"]["correct"]))  # no answer (an error row) scores 0, as a failed prediction does


def _fmt(scores: list[int]) -> str:
    return "nan" if not scores else f"{sum(scores) / len(scores):.3f}"  # np.mean([]) is nan; f"{nan:.3f}" is "nan"


def _unknown(value, key: str, known) -> HarnessError:
    return HarnessError(f"VLMEvalKit's rating has no {key} {value!r} (known: {', '.join(map(str, known))})")


def videomme_rating(rows: list[dict]) -> dict:
    """`get_dimension_rating` of Video-MME: {short|medium|long|overall: {overall, domain, sub_category, task_type}}."""
    groups = {d: {k: {c: [] for c in cats} for k, cats in VIDEOMME_CATEGORIES.items()}
              for d in (*VIDEOMME_DURATIONS, "overall")}
    for r in rows:
        duration = r["categories"].get("duration")
        if duration not in VIDEOMME_DURATIONS:
            raise _unknown(duration, "duration", VIDEOMME_DURATIONS)
        for key, cats in VIDEOMME_CATEGORIES.items():
            value = r["categories"].get(key)
            if value not in cats:
                raise _unknown(value, key, cats)
            for d in (duration, "overall"):
                groups[d][key][value].append(_score(r))
    return {d: {"overall": _fmt([s for v in g["domain"].values() for s in v]),
                **{k: {c: _fmt(v) for c, v in g[k].items()} for k in VIDEOMME_CATEGORIES}}
            for d, g in groups.items()}


def longvideobench_rating(rows: list[dict]) -> dict:
    """`get_dimension_rating` of LongVideoBench: {15|60|600|3600|overall: {overall, question_category}}."""
    groups = {d: {c: [] for c in LVB_CATEGORIES} for d in (*LVB_DURATIONS, "overall")}
    for r in rows:
        duration, category = str(r["categories"].get("duration_group")), r["categories"].get("question_category")
        if duration not in LVB_DURATIONS:
            raise _unknown(duration, "duration_group", LVB_DURATIONS)
        if category not in LVB_CATEGORIES:
            raise _unknown(category, "question_category", LVB_CATEGORIES)
        for d in (duration, "overall"):
            groups[d][category].append(_score(r))
    return {d: {"overall": _fmt([s for v in g.values() for s in v]),
                "question_category": {c: _fmt(v) for c, v in g.items()}} for d, g in groups.items()}


def mlvu_acc(rows: list[dict]) -> dict:
    """MLVU's `_acc.csv` as a dict: per task {success, overall, acc}, then M-Avg (micro) and G-Avg (not computed)."""
    tasks: dict[str, list[int]] = {}
    for r in rows:  # VLMEvalKit scores an answer holding its API-failure text -1, and sums scores as successes
        failed = API_FAILURE in str(r["prediction"].get("raw_text") or "")
        tasks.setdefault(str(r["categories"].get("task_type")), []).append(-1 if failed else _score(r))
    out = {t: {"success": sum(v), "overall": len(v), "acc": round(sum(v) / len(v) * 100, 1)} for t, v in tasks.items()}
    success = sum(out[t]["success"] for t in out if t in MLVU_TASKS)
    overall = sum(out[t]["overall"] for t in out if t in MLVU_TASKS)
    out["M-Avg"] = {"success": success, "overall": overall,
                    "acc": round(success / overall * 100, 1) if overall else math.nan}
    out["G-Avg"] = {"success": None, "overall": None, "acc": None,
                    "note": "needs MLVU's open-ended questions and a GPT judge: not computed"}
    return out


def protocol_record(benchmark: str, dataset: str, note: str = "") -> dict:
    """What metrics.json says about the protocol under which a run was scored."""
    return {"framework": "VLMEvalKit", "commit": VLMEVALKIT_COMMIT, "dataset": dataset,
            "judge": "exact_matching (no LLM judge)",
            "parser": "vlmevalkit",
            "parser_detail": ("MLVU: the character before the first ')' (or the whole answer) against the gold "
                              "letter, else can_infer over the candidates" if benchmark == "mlvu" else
                              "extract_characters_regex, then can_infer over the options found in the question "
                              "field; 'Z' (no match) is recorded as parse_failed"),
            "prompt": "the message's text items joined in order after the frames" + note,
            "frames": "VLMEvalKit's nframe=K is --grid nframe:K, or --grid all with --sampler "
                      "uniform:variant=vlmevalkit --frames K; fps=F is --grid fps:F",
            "averaging": "micro, 0-1 strings with 3 decimals" if benchmark != "mlvu" else
                         "per task acc = success/overall*100 (1 decimal); M-Avg micro over the 7 tasks",
            "scale": "0-1" if benchmark != "mlvu" else "0-100"}
