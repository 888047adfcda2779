"""Runs to export, made by `harness run` itself (helpers; the fixtures are in conftest.py): the needle default's
world (small) and stand-in benchmark runs (hand-written records in each benchmark's annotation format, generated
clips, one unreadable video for an error row) answered by a scripted backbone, so every kind of row occurs: right,
wrong, unparsable, error."""
import json
from pathlib import Path

from backbones.colour_probe import ColourProbe
from harness.registry import BACKBONES
from harness.util.synth import write_index_clip

# "#k" in a question picks answer k: a letter (wrong), a sentence with the right letter, no letter, option text
ANSWERS = ["B", "The answer is C.", "I cannot tell from these frames.", "(C) Three."]


@BACKBONES.register("export-script-probe", description="test backbone: the answer its question's #k tag names")
class ScriptProbe(ColourProbe):
    name = "export-script-probe"
    checks_answers = False

    def generate(self, frames, timestamps, prompt):
        k = int(prompt.split("#", 1)[1][0])
        return ANSWERS[k]


def videomme(k: int, video: str) -> dict:
    return {"video_id": video, "duration": "short", "domain": "Knowledge", "sub_category": "Humanity & History",
            "url": "u", "videoID": video, "question_id": f"{video}-{k}", "task_type": "Counting Problem",
            "question": f"How many? #{k}", "options": ["A. One.", "B. Two.", "C. Three.", "D. Four."], "answer": "C"}


def longvideobench(k: int, video: str) -> dict:
    return {"id": f"{video}_{k}", "video_id": video, "video_path": f"{video}.mp4", "question": f"What? #{k}",
            "candidates": ["x", "y", "Three", "z"], "correct_choice": 2, "duration": 10.0,
            "duration_group": 15 if k % 2 else 60, "question_category": "S2E" if k < 2 else "T3O"}


def mlvu(k: int, video: str) -> dict:
    return {"video_name": f"{video}.mp4", "duration": 100.0, "question": f"Why? #{k}", "candidates":
            ["One", "Two", "Three", "Four"], "answer": "Three", "task_type": "needle" if k < 2 else "ego",
            "question_id": f"{video}-q{k}"}


RECORDS = {"videomme": videomme, "longvideobench": longvideobench, "mlvu": mlvu}
# (answer tag, video): two questions on each of two good videos, one on an unreadable one
LAYOUT = [(0, "vid1"), (1, "vid1"), (2, "vid2"), (3, "vid2"), (1, "broken")]


def make_stand_in(tmp_path: Path, task: str) -> tuple[Path, Path]:
    """(annotation file, video root) of five stand-in questions of `task`."""
    root = tmp_path / "videos"
    records = [RECORDS[task](k, v) for k, v in LAYOUT]
    root.mkdir(parents=True, exist_ok=True)
    for _, v in LAYOUT:
        if v == "broken":
            (root / f"{v}.mp4").write_bytes(b"not a video")
        elif not (root / f"{v}.mp4").exists():
            write_index_clip(root / f"{v}.mp4", 40, 4)
    f = tmp_path / f"{task}.json"
    f.write_text(json.dumps(records))
    return f, root


def harness(*argv) -> int:
    from harness.cli.app import main
    return main([str(a) for a in argv])


def rows_of(run_dir: Path) -> list[dict]:
    return [json.loads(x) for x in (Path(run_dir) / "predictions.jsonl").read_text().splitlines()]


def metrics_of(run_dir: Path) -> dict:
    return json.loads((Path(run_dir) / "metrics.json").read_text())["metrics"]


@BACKBONES.register("export-corpus-probe", description="test backbone: the answer a test assigned to its prompt")
class CorpusProbe(ColourProbe):
    name = "export-corpus-probe"
    checks_answers = False
    ANSWERS: dict = {}  # prompt -> answer text, filled by the test

    def generate(self, frames, timestamps, prompt):
        return self.ANSWERS[prompt]
