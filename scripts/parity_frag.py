"""Parity of FRAG's scoring and selection with the official code (NVlabs/FRAG, `frame_selection.py`), not run by CI.

    .venv/bin/python scripts/parity_frag.py PATH [--cases 300] [--seed 0]

PATH is a checkout of github.com/NVlabs/FRAG (a folder holding frame_selection.py and utils.py) or its bare git
directory (the files are read from HEAD). The official module imports einops (unused by the selection) and its
`utils` imports decord: a missing one is stubbed with an empty module; nothing else is re-created. The model is a
stub with the interface `FrameSelection` calls (`tokenizer.convert_tokens_to_ids`, `run_model(images, prompt,
output_scores=True, post_proc_func=...)`) that hands the official post-processing the same random first-token
scores (a float32 (1, V) tensor per frame) the harness's formula gets (`backbones.qwen2_5_vl.scoring.
first_token_probability`, the probability of "A"), then `samplers.frag.frag_select` picks the top K. The script
prints:

* scores: cases whose per-frame scores are bit-identical to the official ones;
* selections: cases whose selected frame numbers (official `selected_indices`) equal ours, over random N, K (K > N
  included: both take every frame) and vocabulary sizes, distinct scores;
* ties: the same on cases with repeated frames (equal scores), where the official `torch.topk` order is the kernel's
  and ours is the earlier candidate: reported, not required;
* prompts: questions whose official `score_prompt` text equals `frag_prompt` character for character (and
  samplers.frag.PROMPT_TEMPLATE is the scorer's template);
* grids: the candidates of the official `VideoTask.load_visual` (tasks/base.py; decord's reader replaced by a stub
  of the given frame count) against `--grid arange:N`, over random frame counts and N (N = 1 and N > F included).

Exit status 1 when a score, a distinct-score selection, a prompt or a grid differs.
"""
from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import tempfile
import types
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from backbones.qwen2_5_vl.scoring import first_token_probability  # noqa: E402
from harness.features.backbone_scorer import PROMPT_TEMPLATE, frag_prompt  # noqa: E402
from harness.video.grid import grid_indices  # noqa: E402
from samplers import frag  # noqa: E402

BUDGETS = (1, 2, 4, 8, 16, 32, 64)
QUESTIONS = ("What colour is the square?", "  Why does the man open the door?  \n", "How many cars pass by",
             "What happens after the dog jumps?\nA. runs\nB. sits", "Qu'est-ce qui se passe ? {x} 100%")


OFFICIAL_FILES = ("frame_selection.py", "utils.py", "tasks/base.py", "tasks/utils.py")


def official_folder(path: Path) -> Path:
    """A folder with the official files: the checkout itself, or HEAD's files of a bare git directory."""
    if (path / "frame_selection.py").is_file():
        return path
    folder = Path(tempfile.mkdtemp(prefix="frag-official-"))  # a bare git directory, as `fetch` leaves it
    for name in OFFICIAL_FILES:
        text = subprocess.run(["git", "--git-dir", str(path), "show", f"HEAD:{name}"], check=True,
                              capture_output=True, text=True).stdout
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text)
    return folder


def load_official(path: Path):
    """The official FrameSelection class, einops and decord stubbed when missing."""
    folder = official_folder(path)
    for name in ("einops", "decord"):
        if importlib.util.find_spec(name) is None:
            stub = types.ModuleType(name)
            stub.VideoReader, stub.cpu = None, None  # names utils.py imports from decord
            sys.modules[name] = stub
    sys.path.insert(0, str(folder))
    spec = importlib.util.spec_from_file_location("frag_official_frame_selection", folder / "frame_selection.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.FrameSelection


class StubTokenizer:
    def __init__(self, select: int):
        self.select = select

    def convert_tokens_to_ids(self, token: str) -> int:
        assert token == "A", token
        return self.select


class StubModel:
    """Hands `post_proc_func` the first-token scores of the frame it is given (images are frame numbers)."""

    def __init__(self, logits: dict, select: int):
        self.logits, self.tokenizer, self.prompts = logits, StubTokenizer(select), []

    def run_model(self, images, message, output_scores=False, post_proc_func=None):
        import torch

        assert output_scores and len(images) == 1, "FRAG scores each frame alone"
        self.prompts.append(message[0])
        return post_proc_func({"scores": [torch.from_numpy(self.logits[images[0]][None])]})


def random_case(rs: np.random.RandomState, ties: bool):
    n = int(rs.randint(1, 300))
    k = int(rs.choice(BUDGETS))
    vocab = int(rs.randint(4, 3000))
    select = int(rs.randint(0, vocab))
    scale = float(rs.choice([0.1, 1.0, 5.0, 20.0]))
    frames = np.sort(rs.choice(100000, n, replace=False))  # native frame numbers of the candidates
    rows = (rs.randn(n, vocab) * scale).astype(np.float32)
    if ties and n > 1:  # repeated frames: some candidates get the scores of an earlier one
        for i in rs.choice(n, n // 2, replace=False):
            rows[i] = rows[rs.randint(0, n)]
    return frames, k, select, rows


def run_case(FrameSelection, rs, ties: bool) -> tuple[bool, bool, bool]:
    """(scores identical, selection identical, prompt identical) of one random case."""
    import torch

    frames, k, select, rows = random_case(rs, ties)
    model = StubModel(dict(zip(frames.tolist(), rows)), select)
    question = QUESTIONS[rs.randint(len(QUESTIONS))]
    official = FrameSelection(model, "topk_frames", output_frames=k, sample_frames=len(frames))
    _, indices, official_scores = official.select_frames({"question": question}, frames.tolist(), frames.tolist(),
                                                         return_scores=True)
    ours_scores = first_token_probability(torch.from_numpy(rows), select)
    same_scores = np.array_equal(np.float32(ours_scores), np.float32([official_scores[f] for f in frames.tolist()]))
    ours = frames[frag.frag_select(ours_scores, k)].tolist()
    same_prompt = model.prompts[0] == frag_prompt(question) and set(model.prompts) == {model.prompts[0]}
    return same_scores, ours == list(indices[0]), same_prompt


class StubVideo:
    """decord's VideoReader as `load_visual` uses it: a length, and `get_batch(indices).asnumpy()`."""

    def __init__(self, frame_count, ctx=None, num_threads=1):
        self.frame_count = int(frame_count)

    def __len__(self) -> int:
        return self.frame_count

    def get_batch(self, indices):
        assert all(0 <= i < self.frame_count for i in indices), "the official code reads only frames it has"
        return types.SimpleNamespace(asnumpy=lambda: np.zeros((len(indices), 2, 2, 3), np.uint8))


def grid_cases(path: Path, rs: np.random.RandomState, cases: int) -> tuple[int, int]:
    """(official candidate lists equal to `arange:N`, cases): the official `VideoTask.load_visual` imported from
    a package made of tasks/base.py and tasks/utils.py, its decord reader replaced by `StubVideo`."""
    folder = official_folder(path)
    package = Path(tempfile.mkdtemp(prefix="frag-tasks-")) / "frag_official_tasks"
    package.mkdir()
    (package / "__init__.py").write_text("")
    for name in ("base.py", "utils.py"):
        (package / name).write_text((folder / "tasks" / name).read_text())
    sys.path.insert(0, str(package.parent))
    for name in ("decord",):
        if importlib.util.find_spec(name) is None:
            stub = types.ModuleType(name)
            stub.VideoReader, stub.cpu = None, lambda i: None
            sys.modules[name] = stub
    import frag_official_tasks.base as base

    base.VideoReader = StubVideo
    task = base.VideoTask(dataset=None, split=None)
    fixed = [(61, 7), (17, 7), (7, 1), (8, 1), (5, 10), (1, 1), (1000, 256), (100, 256)]
    drawn = [(int(rs.randint(1, 200000)), int(rs.choice([1, 2, 7, 32, 128, 256, 300]))) for _ in range(cases)]
    same = sum(task.load_visual(f, n)[1] == grid_indices(f, 30.0, f"arange:{n}").tolist() for f, n in fixed + drawn)
    return same, len(fixed) + len(drawn)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("official", type=Path, help="checkout (or bare git directory) of NVlabs/FRAG")
    parser.add_argument("--cases", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    FrameSelection = load_official(args.official)
    rs = np.random.RandomState(args.seed)
    counts = {"scores": 0, "selections": 0, "prompts": 0, "ties": 0}
    for _ in range(args.cases):
        scores, selection, prompt = run_case(FrameSelection, rs, ties=False)
        counts["scores"] += scores
        counts["selections"] += selection
        counts["prompts"] += prompt
    tie_cases = max(1, args.cases // 3)
    for _ in range(tie_cases):
        counts["ties"] += run_case(FrameSelection, rs, ties=True)[1]
    template = frag.PROMPT_TEMPLATE == PROMPT_TEMPLATE
    grids, grid_total = grid_cases(args.official, rs, args.cases)
    print(f"scores identical (bit for bit): {counts['scores']} of {args.cases}")
    print(f"selections identical: {counts['selections']} of {args.cases}")
    print(f"selections identical with tied scores (official order among ties is torch.topk's): "
          f"{counts['ties']} of {tie_cases}")
    print(f"prompts identical character for character: {counts['prompts']} of {args.cases}; "
          f"samplers.frag.PROMPT_TEMPLATE is the scorer's: {template}")
    print(f"grids identical (official load_visual against --grid arange:N): {grids} of {grid_total}")
    ok = template and counts["scores"] == counts["selections"] == counts["prompts"] == args.cases \
        and grids == grid_total
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
