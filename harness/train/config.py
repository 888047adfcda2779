"""Every hyper-parameter of a TSPO training run, with its meaning (the help text of `harness train tspo`).

Defaults are the official run's (the TSPO paper's training recipe, arXiv 2508.04369, and its train_deepspeed.sh):
G = 8 rollouts, K = 16 frames, window 12, tau 0.025 -> 0.01, AdamW lr 5e-4 with linear decay, data seed 42.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

from harness.errors import HarnessError
from samplers.tspo.settings import DEFAULT_TAU, DEFAULT_WINDOW

LOGPROBS = ("official", "plackett-luce")
TEMPORAL_REWARDS = ("share", "coverage")
ON_ERROR = ("raise", "skip")
# Not part of a run's identity (a resume may change them): where it runs, how it reports and checkpoints, how
# the backbone batches; not what it computes. grad_accum enters as the global batch.
NOT_IDENTITY = ("out", "stop_after", "device", "cache_dir", "decode_backend", "progress", "tensorboard",
                "grad_accum", "save_every", "keep_checkpoints", "watch", "watch_every", "backbone_batch")


def _opt(default=dataclasses.MISSING, help: str = "", factory=dataclasses.MISSING):
    return field(default=default, default_factory=factory, metadata={"help": help})


@dataclass
class TSPOTrainConfig:
    """Every hyper-parameter of a TSPO training run; `harness train tspo` has one option per field but betas."""

    out: str = _opt(help="the run directory (rerun the same command to resume)")
    # -- the data
    data: str = _opt("needle", "training questions: needle (the offline train split), task:NAME (any task) or a "
                               "TSPO-10K .jsonl file (default {default})")
    task_args: dict = _opt(factory=dict, help="option of the training task, e.g. videos=200 (needle: videos, "
                                              "questions_per_video, seed, ...)")
    video_root: str | None = _opt(None, "folder the .jsonl file's video paths are relative to")
    grid: str = _opt("1fps", "candidate grid of task videos (default {default}); .jsonl videos use the official "
                             "training rule: 1 fps when that gives 50-128 frames, else 128 uniform")
    limit: int | None = _opt(None, "train on the first N questions only (default: all)")
    # -- the models
    backbone: str = _opt("mini-qwen2.5-vl", "frozen backbone that answers on each rollout's frames, greedily "
                                            "(default {default})")
    backbone_args: dict = _opt(factory=dict, help="backbone option")
    backbone_batch: int | None = _opt(None, "rollouts per batched backbone call (default: a question's rollouts at "
                                            "once); does not change results")
    encoder: str = _opt("mini-clip", "CLIP whose image and text features the agent reads (default {default}; "
                                     "official: openai/clip-vit-large-patch14)")
    init: str = _opt("normal", "initial agent: normal (weights N(0, INIT_STD), biases 0: official), zero (the same "
                               "ranking as CLIP scores) or an agent file or folder (default {default})")
    init_std: float = _opt(0.02, "standard deviation of the normal initial weights (default {default})")
    # -- the policy and its rewards
    frames: int = _opt(16, "K, frames each rollout selects for questions with a temporal reward (default "
                           "{default}; official training_sample_len)")
    general_frames: int | None = _opt(None, "K for TSPO-10K 'general' rows (default: FRAMES // 2, as official)")
    group_size: int = _opt(8, "G, rollouts per question; rewards are normalised over the group into advantages "
                              "(default {default}; official num_generations)")
    window: int = _opt(DEFAULT_WINDOW, "width of the agent's local attention: each candidate attends to WINDOW "
                                       "candidates around it (default {default})")
    tau_start: float = _opt(DEFAULT_TAU, "temperature dividing the agent's scores at step 0, annealed linearly to "
                                         "TAU_END; lower makes the Gumbel top-k draws greedier (default {default})")
    tau_end: float = _opt(0.01, "temperature dividing the agent's scores at the last step (default {default})")
    logprob: str = _opt("official", "log-probability of a rollout's frames: official (mean log-softmax of the "
                                    "selected candidates) or plackett-luce (the ordered draw exactly) (default "
                                    "{default})")
    temporal_reward: str = _opt("share", "temporal reward: share (of the K frames inside the ground truth, "
                                         "official) or coverage (of the ground-truth intervals holding a selected "
                                         "frame) (default {default})")
    # -- the optimizer
    lr: float = _opt(5e-4, "AdamW learning rate, decayed linearly to 0 without warm-up (default {default})")
    betas: tuple = _opt((0.9, 0.999), "AdamW betas")
    eps: float = _opt(1e-8, "AdamW epsilon (default {default})")
    weight_decay: float = _opt(0.0, "AdamW weight decay (default {default})")
    max_grad_norm: float = _opt(1.0, "gradient norm clipping threshold (default {default})")
    grad_accum: int = _opt(2, "questions per process per optimizer step; the global batch is processes x "
                              "GRAD_ACCUM (default {default})")
    epochs: int = _opt(1, "passes over the training questions (default {default})")
    max_steps: int | None = _opt(None, "optimizer steps (default: EPOCHS x questions / global batch, rounded up)")
    seed: int = _opt(42, "seed of the data order, haystacks, Gumbel noise and initial weights (default {default}; "
                         "official data_seed)")
    # -- the run directory
    save_every: int = _opt(100, "steps between checkpoints (default {default})")
    keep_checkpoints: int = _opt(8, "checkpoints kept, the latest ones (default {default})")
    watch: list = _opt(factory=list, help="question id whose agent scores are logged for `harness train plot`, "
                                          "repeatable (default: the first question)")
    watch_every: int = _opt(10, "steps between logs of the watched questions (default {default})")
    on_error: str = _opt("raise", "a question whose video cannot be read: raise (stop) or skip (log it and leave "
                                  "it out of its step) (default {default})")
    device: str = _opt("cpu", "torch device (default {default})")
    cache_dir: str = _opt(".cache/features", "feature cache directory (default {default})")
    decode_backend: str = _opt("decord", "decord, pyav or torchcodec (default {default})")
    tensorboard: bool = _opt(True, "also write TensorBoard scalars when tensorboard is installed (default "
                                   "{default})")
    progress: bool = _opt(True, "progress bar (default {default})")
    stop_after: int | None = _opt(None, "stop, with a checkpoint, after this many steps of this invocation "
                                        "(default: run to the end)")

    def validate(self) -> "TSPOTrainConfig":
        def need(ok, message):
            if not ok:
                raise HarnessError(message)

        for name in ("frames", "group_size", "window", "grad_accum", "epochs", "save_every", "keep_checkpoints",
                     "watch_every"):
            value = getattr(self, name)
            need(isinstance(value, int) and not isinstance(value, bool) and value >= 1,
                 f"{name} must be a whole number >= 1, got {value!r}")
        need(self.group_size >= 2, f"group_size must be at least 2 (advantages are normalised over the group), "
                                   f"got {self.group_size}")
        for name in ("general_frames", "max_steps", "limit", "stop_after", "backbone_batch"):
            value = getattr(self, name)
            need(value is None or (isinstance(value, int) and value >= 1),
                 f"{name} must be a whole number >= 1 or unset, got {value!r}")
        need(self.lr > 0, f"lr must be positive, got {self.lr}")
        need(0 < self.tau_end <= self.tau_start, f"need 0 < tau_end <= tau_start, got {self.tau_start}, "
                                                 f"{self.tau_end}")
        need(self.max_grad_norm > 0, f"max_grad_norm must be positive, got {self.max_grad_norm}")
        need(self.init_std > 0, f"init_std must be positive, got {self.init_std}")
        need(self.logprob in LOGPROBS, f"logprob {self.logprob!r} must be one of {', '.join(LOGPROBS)}")
        need(self.temporal_reward in TEMPORAL_REWARDS,
             f"temporal_reward {self.temporal_reward!r} must be one of {', '.join(TEMPORAL_REWARDS)}")
        need(self.on_error in ON_ERROR, f"on_error {self.on_error!r} must be one of {', '.join(ON_ERROR)}")
        need(self.init in ("normal", "zero") or Path(self.init).expanduser().exists(),
             f"init {self.init!r} must be 'normal', 'zero' or an existing agent file or folder")
        self.betas = tuple(float(b) for b in self.betas)
        self.watch = [str(w) for w in (self.watch or [])]
        return self

    def to_json(self) -> dict:
        return json.loads(json.dumps(dataclasses.asdict(self), default=str))

    @property
    def k_general(self) -> int:
        return self.general_frames or max(1, self.frames // 2)
