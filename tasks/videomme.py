"""`videomme`: Video-MME as lmms-eval's `videomme` (default) or, with `subtitles=True`, `videomme_w_subtitle`.

Data: `videomme.json` (a list of 2700 records `video_id, duration (short|medium|long), domain, sub_category, url,
videoID, question_id, task_type, question, options ("A. ..."), answer`), a parquet file of the same rows, or the
Hugging Face dataset `lmms-eval/Video-MME` (split `test`).
Videos: `<video_root>/<videoID>.mp4`, else `.MP4`, else `.mkv` (lmms-eval: `$HF_HOME/videomme/data/`).
Subtitles: `<subtitle_root>/<videoID>.srt` (lmms-eval: `$HF_HOME/videomme/subtitle/`).
Sample ids are the records' `question_id` ("001-1"). Breakdowns: duration, domain, task_type, sub_category.

Prompts (lmms-eval 0.7.3, by model key; an unknown key gets `default`):

* without subtitles: ``OPTION_PROMPT + "\\n" + question + "\\n" + options + "\\n" + post``; `post` is
  ``"\\nAnswer with the option's letter from the given choices directly."`` (default), ``"The best answer is:"``
  (llava_vid) or ``"Answer the question with A, B, C, or D."`` (gpt4v); `qwen3_vl` uses
  ``"Question: " + question + "\\nOptions:\\n" + options + "\\nAnswer with the option letter only."``.
* with subtitles: ``"This video's subtitles are listed below: \\n" + SUBS + "\\n" + OPTION_PROMPT + "\\n" +
  question + "\\n" + options + "\\n" + "The best answer is:"`` for every key but qwen3_vl (whose layout follows
  SUBS + "\\n"). SUBS is "No subtitles available" without an .srt file; otherwise lmms-eval's construction
  (`subtitle_text`): the SRT blocks (split on blank lines, a dict keyed by (start, end) so a repeated time range
  keeps its first position and last text) are mapped to frame numbers ``int(t * fps)``; ``np.linspace(0, total-1,
  frame_num, dtype=int)`` frames are taken (frame_num 32, or 768 for llava_vid and qwen3_vl); every block whose
  [start, end) frame range holds a sampled frame is collected, de-duplicated with ``list(set(...))`` (CPython's set
  order, reproduced by doing the same), and the first ``<font color="white" size=".72c">...</font>`` text of each
  is joined with newlines. lmms-eval reads fps and frame count with OpenCV from ``<videoID>.mp4`` even when the
  video is ``.MP4``/``.mkv``, where OpenCV sees no file (fps 0, 0 frames) and the subtitle text is empty; this is
  reproduced. Without OpenCV the harness reads the same two numbers from the container with PyAV
  (``stream.frames``, else ``duration * fps`` rounded; ``average_rate``), recorded as `subtitle_meta`.
"""
from __future__ import annotations

import functools
import re
from pathlib import Path

import numpy as np

from harness.errors import HarnessError
from harness.records import Sample
from harness.registry import TASKS
from tasks.benchmark import COMMON_CHOICES, COMMON_HELP, BenchmarkTask, hf_home, resolve_video
from tasks.schema import Schema, safe_relpath
from tasks.vlmevalkit import prompt_of, videomme_messages, videomme_rating

OPTION_PROMPT = ("Select the best answer to the following multiple-choice question based on the video and the "
                 "subtitles. Respond with only the letter (A, B, C, or D) of the correct option.")
POST_PROMPTS = {"default": "\nAnswer with the option's letter from the given choices directly.",
                "llava_vid": "The best answer is:", "gpt4v": "Answer the question with A, B, C, or D."}
QWEN3_PRE, QWEN3_POST = "Question: ", "Answer with the option letter only."
SUBTITLE_INTRO = "This video's subtitles are listed below: \n"
NO_SUBTITLES = "No subtitles available"
SUBTITLE_FRAMES = {"default": 32, "llava_vid": 768, "qwen3_vl": 768}
STYLES = ("default", *sorted({*POST_PROMPTS, *SUBTITLE_FRAMES} - {"default"}))  # what `prompt` words differently
VIDEO_EXTENSIONS = (".mp4", ".MP4", ".mkv")
_FONT = re.compile(r'<font color="white" size=".72c">(.*?)</font>')
# videomme.json, its parquet rows and the Hugging Face rows share one layout; `duration` is the bucket (short, ...)
SCHEMA = Schema("videomme.json records", {"question_id": "id", "videoID": "path", "question": "text",
                                          "options": "options", "answer": "letter", "duration": "name",
                                          "domain": "name", "task_type": "name", "sub_category": "name"},
                id="question_id", gold="answer", gold_kind="letter", options_name="options")


# ---------------------------------------------------------------------------------------------------------------
# subtitles, as lmms-eval's videomme utils build them


def parse_srt_time(text: str) -> float:
    h, m, s_ms = text.split(":")
    s, ms = s_ms.split(",")
    return int(h) * 3600 + int(m) * 60 + int(s) + int(ms) / 1000


def load_srt(path) -> dict:
    """{(start s, end s): text} in lmms-eval's way: blocks split on blank lines, lines 3+ joined by spaces."""
    subtitles = {}
    with open(path, encoding="utf-8") as f:
        content = f.read().split("\n\n")
    for section in content:
        if section.strip():
            lines = section.split("\n")
            if len(lines) >= 3:
                start, end = lines[1].split(" --> ")[:2]
                subtitles[(parse_srt_time(start), parse_srt_time(end))] = " ".join(lines[2:])
    return subtitles


def subtitle_text(srt_path, fps: float, total_frames: int, frame_num: int) -> str:
    """The subtitle lines lmms-eval puts in the prompt for a video of `total_frames` frames at `fps`."""
    by_frame = [(int(a * fps), int(b * fps), text) for (a, b), text in load_srt(srt_path).items()]
    sampled = np.linspace(0, total_frames - 1, frame_num, dtype=int).tolist()
    hits = []
    for frame in sampled:
        for i, (start, end, _) in enumerate(by_frame):
            if start <= frame < end:
                hits.append(i)
    hits = list(set(hits))  # lmms-eval's order: CPython set iteration over these ints, in this insertion order
    texts = []
    for i in hits:
        found = _FONT.findall(by_frame[i][2])
        if found:
            texts.append(found[0])
    return "\n".join(texts)


def opencv_meta(path) -> tuple[float, int, str]:
    """(fps, frame count, source) as lmms-eval reads them with cv2 (fps 0 and 0 frames for a missing file)."""
    try:
        import cv2
    except ImportError:
        cv2 = None
    if cv2 is not None:
        cap = cv2.VideoCapture(str(path))
        try:
            return float(cap.get(cv2.CAP_PROP_FPS)), int(cap.get(cv2.CAP_PROP_FRAME_COUNT)), "cv2"
        finally:
            cap.release()
    if not Path(path).is_file():
        return 0.0, 0, "pyav"
    import av
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            rate = stream.average_rate or stream.guessed_rate
            fps = float(rate) if rate else 0.0
            frames = int(stream.frames or 0)
            if frames == 0:  # OpenCV's fallback: duration * fps, rounded
                if stream.duration is not None and stream.time_base is not None:
                    seconds = float(stream.duration * stream.time_base)
                else:
                    seconds = (container.duration or 0) / 1e6
                frames = int(np.floor(seconds * fps + 0.5))
            return fps, frames, "pyav"
    except Exception as e:
        raise HarnessError(f"cannot read the frame rate of {path} for its subtitles: {e}") from None


@functools.lru_cache(maxsize=4096)
def _cached_subtitles(srt_path: str, video_path: str, frame_num: int) -> tuple[str, str]:
    fps, total, source = opencv_meta(video_path)
    try:
        return subtitle_text(srt_path, fps, total, frame_num), source
    except (ValueError, IndexError) as e:  # lmms-eval crashes on these files too
        raise HarnessError(f"subtitle file {srt_path} is not in the SRT layout lmms-eval reads: {e}") from None


# ---------------------------------------------------------------------------------------------------------------


def strip_letter(option: str, i: int) -> str:
    prefix = f"{chr(ord('A') + i)}. "
    return option[len(prefix):] if option.startswith(prefix) else option


@TASKS.register("videomme", description="Video-MME (2700 Q), lmms-eval videomme / videomme_w_subtitle prompts and "
                                        "scoring; needs the videos (video_root)",
                help={**COMMON_HELP, "subtitles": "add the subtitle lines (lmms-eval videomme_w_subtitle)",
                      "subtitle_root": "directory of <videoID>.srt files (default: $HF_HOME/videomme/subtitle)"},
                choices=COMMON_CHOICES)
class VideoMME(BenchmarkTask):
    name = "videomme"
    prompt_styles = STYLES
    hf_dataset = "lmms-eval/Video-MME"
    hf_split = "test"
    annotation_format = "videomme.json: a list of records with question_id, videoID, duration, question, options"
    default_video_subdir = "videomme/data"
    parser_benchmark = "videomme"
    category_keys = ("duration", "domain", "task_type", "sub_category")
    stratify_key = "duration"
    averaging = ("micro: correct / questions, overall (lmms-eval videomme_perception_score) and per duration, "
                 "domain, task_type and sub_category")

    def __init__(self, annotations: str | None = None, video_root: str | None = None, skip_missing: bool = False,
                 parser: str | None = None, subtitles: bool = False, subtitle_root: str | None = None,
                 protocol: str = "lmms-eval", subtitle_frames: str | None = None, evidence: str | None = None):
        super().__init__(annotations, video_root, skip_missing, parser, protocol, evidence=evidence)
        self.subtitle_frames = vlmevalkit_subtitle_frames(protocol, subtitles, subtitle_frames)
        self.subtitles = bool(subtitles)
        self.subtitle_root = Path(subtitle_root) if subtitle_root else hf_home() / "videomme" / "subtitle"
        self.lmms_task = "videomme_w_subtitle" if self.subtitles else "videomme"

    def config(self) -> dict:
        cfg = {**super().config(), "subtitles": self.subtitles}
        if self.subtitles:
            cfg["subtitle_root"] = str(self.subtitle_root)
        if self.subtitle_frames:
            cfg["subtitle_frames"] = self.subtitle_frames
        return cfg

    def video_file(self, video_id: str) -> str:
        """`<videoID>.mp4`, else the first of .MP4/.mkv that exists (else .mp4, which is then reported missing)."""
        safe_relpath(video_id + ".mp4")
        for ext in VIDEO_EXTENSIONS:
            if (self.video_root / (video_id + ext)).is_file():
                return video_id + ext
        return video_id + ".mp4"

    schemas = (SCHEMA,)

    def to_samples(self, record: dict) -> list[Sample]:
        SCHEMA.check(record)
        options = SCHEMA.options([strip_letter(o, i) for i, o in enumerate(record["options"])])
        file = self.video_file(record["videoID"])
        return [Sample(
            id=str(record["question_id"]), video=str(resolve_video(self.video_root, file)),
            question=record["question"], options=tuple(options), answer=SCHEMA.gold_index(record, options),
            categories={"duration": record["duration"], "domain": record["domain"],
                        "task_type": record["task_type"], "sub_category": record["sub_category"]},
            metadata={**{k: v for k, v in record.items() if k != "question"}, "video_file": file},
        )]

    vlmevalkit_dataset = "Video-MME"

    def messages(self, sample: Sample) -> list[dict]:
        if self.protocol_name != "vlmevalkit":
            return super().messages(sample)
        subs = None
        if self.subtitles:
            srt = self.subtitle_root / safe_relpath(str(sample.metadata["videoID"]) + ".srt")
            subs = vlmevalkit_subtitles(srt, sample.video, self.subtitle_frames) if srt.is_file() else ""
        return videomme_messages(sample.question, [str(o) for o in sample.metadata["options"]], subs)

    def vlmevalkit_metrics(self, rows: list[dict]) -> dict:
        return {"rating": videomme_rating(rows)}

    def prompt(self, sample: Sample, style: str = "default") -> str:
        if self.protocol_name == "vlmevalkit":
            return prompt_of(self.messages(sample))
        options = "\n".join(str(o) for o in sample.metadata["options"])
        if style == "qwen3_vl":
            body = f"{QWEN3_PRE}{sample.question}\nOptions:\n{options}\n{QWEN3_POST}"
        elif self.subtitles:
            body = OPTION_PROMPT + "\n" + sample.question + "\n" + options + "\n" + "The best answer is:"
        else:
            post = POST_PROMPTS.get(style, POST_PROMPTS["default"])
            body = OPTION_PROMPT + "\n" + sample.question + "\n" + options + "\n" + post
        if not self.subtitles:
            return body
        return SUBTITLE_INTRO + self.subtitle_lines(sample, style) + "\n" + body

    def subtitle_lines(self, sample: Sample, style: str = "default") -> str:
        video_id = str(sample.metadata["videoID"])
        srt = self.subtitle_root / safe_relpath(video_id + ".srt")
        if not srt.is_file():
            return NO_SUBTITLES
        if not Path(sample.video).is_file():
            raise HarnessError(f"the subtitle prompt of {sample.id} needs its video for the frame count: "
                               f"{sample.video} does not exist")
        # lmms-eval asks OpenCV about <videoID>.mp4 whatever the real extension is
        as_lmms_eval = self.video_root / (video_id + ".mp4")
        frame_num = SUBTITLE_FRAMES.get(style, SUBTITLE_FRAMES["default"])
        return _cached_subtitles(str(srt), str(as_lmms_eval), frame_num)[0]


# ---------------------------------------------------------------------------------------------------------------
# subtitles, as VLMEvalKit's Video-MME builds them (protocol=vlmevalkit)


def vlmevalkit_subtitle_frames(protocol: str, subtitles: bool, rule: str | None) -> str | None:
    """The frame rule VLMEvalKit's subtitle lines follow (its dataset's nframe=K or fps=F), required with subtitles
    under protocol=vlmevalkit and refused elsewhere."""
    if protocol != "vlmevalkit" or not subtitles:
        if rule is not None:
            raise HarnessError("subtitle_frames applies only with subtitles=true and protocol=vlmevalkit")
        return None
    name, _, arg = str(rule or "").partition(":")
    try:
        ok = name in ("nframe", "fps") and float(arg) > 0 and (name == "fps" or float(arg).is_integer())
    except ValueError:
        ok = False
    if not ok:
        raise HarnessError(f"subtitle_frames must be nframe:K or fps:F (the VLMEvalKit dataset's frame rule, e.g. "
                           f"nframe:64 for Video-MME_64frame_subs), got {rule!r}")
    return f"{name}:{int(float(arg)) if name == 'nframe' else float(arg)!r}"


def vlmevalkit_frame_indices(n_frames: int, fps: float, rule: str) -> list[int]:
    """VLMEvalKit's save_video_frames indices: nframe:K -> int(i * N/(K+1)), i = 1..K; fps:F -> int(i * fps/F)
    for i < int(N / fps * F)."""
    name, _, arg = rule.partition(":")
    if name == "nframe":
        step = n_frames / (int(arg) + 1)
        return [int(i * step) for i in range(1, int(arg) + 1)]
    step = fps / float(arg)
    return [int(i * step) for i in range(int(n_frames / fps * float(arg)))]


def subtitle_lines_at(subs, frame_indices, fps: float) -> str:
    """For each frame, the text of the first subtitle whose (start, end) holds its time strictly ("\\N" -> " "),
    kept when not blank; joined by newlines. `subs`: (start ms, end ms, text) in file order."""
    out = []
    for index in frame_indices:
        t = int(round(index * (1000 / fps)))  # pysubs2.make_time(fps=fps, frames=index), in its arithmetic
        found = next((s_text.replace("\\N", " ") for start, end, s_text in subs if start < t < end), "")
        if found.strip():
            out.append(found)
    return "\n".join(out)


@functools.lru_cache(maxsize=4096)
def vlmevalkit_subtitles(srt_path, video_path: str, rule: str) -> str:
    """The subtitle lines VLMEvalKit's Video-MME puts in its template: the SRT read by pysubs2 (VLMEvalKit's reader,
    which strips unknown HTML tags and writes <i> as {\\i1}), the frames of `rule` on the decord reading of the
    video (frame count and average fps)."""
    try:
        import pysubs2
    except ImportError:
        raise HarnessError("Video-MME subtitles under protocol=vlmevalkit need pysubs2 (pip install pysubs2), the "
                           "SRT reader VLMEvalKit uses") from None
    try:
        import decord
        reader = decord.VideoReader(str(video_path))
        n_frames, fps = len(reader), float(reader.get_avg_fps())
    except Exception as e:
        raise HarnessError(f"cannot read the frame count of {video_path} for its subtitles: {e}") from None
    try:
        subs = [(s.start, s.end, s.text) for s in pysubs2.load(str(srt_path), encoding="utf-8")]
    except Exception as e:
        raise HarnessError(f"subtitle file {srt_path} cannot be read by pysubs2: {e}") from None
    return subtitle_lines_at(subs, vlmevalkit_frame_indices(n_frames, fps, rule), fps)
