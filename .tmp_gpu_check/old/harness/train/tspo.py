"""The TSPO trainer: group policy optimisation of the temporal agent (docs/reference/tspo.md §4).

One optimizer step takes `global_batch` questions (= processes x `grad_accum`). For each question:

    logits = agent(CLIP image features, text feature, clip scores, window, tau_t)   # features: once per step
    G rollouts: Gumbel-top-k over the logits (seeded per question and step)        # = Plackett-Luce samples
    the frozen backbone answers greedily on each rollout's frames (one batched call; equal sets answered once)
    r_g = accuracy_g + temporal_g (share of the k frames inside the ground truth; or, with temporal_reward
          "coverage", share of the ground-truth intervals that hold a selected frame), temporal only where known
    A_g = (r_g - mean r) / (std r + 1e-4)           (std unbiased, as torch.std)
    loss = (1/G) sum_g -A_g * logp_g
        logp_g = mean_k log softmax(logits)[i_gk]                  official (default)
        logp_g = sum_k [s_{i_gk} - logsumexp_{j not in i_g<k} s_j]  plackett-luce: the sampled ordered set exactly

tau_t = tau_start - (tau_start - tau_end) * step / max_steps; AdamW (lr 5e-4, betas 0.9/0.999, eps 1e-8, no weight
decay), linear decay to 0 with no warm-up, gradient clipping at 1.0: the HF Trainer defaults the official run used.
Only the agent has parameters here: CLIP runs in the feature store and the backbone only generates text.

The official loss value is -mean(A) (about 0, from exp(logp - stopgrad(logp))); this trainer reports the surrogate
(1/G) sum -A_g logp_g instead, whose gradient is the same and whose value says something.

Determinism: the data order (per epoch), each question's haystack and its Gumbel noise come from generators seeded
by (seed, position in the data order), never from global RNG state. So `torchrun` with W processes and
`grad_accum` a gives the same trajectory as one process with grad_accum W*a (the per-question gradients are
summed, all-reduced and divided by the number of questions), and a resumed run continues the same trajectory.

Run directory (`cfg.out`):
    config.json       every hyper-parameter, the data source, the resolved step count, versions
    train.jsonl       one line per optimizer step: rewards, advantage and selection statistics, loss, lr, tau
    rollouts.jsonl    one line per question and step: each rollout's frames, answer and rewards
    watch.jsonl       the watched questions' logits every `watch_every` steps (for `harness train plot`)
    checkpoints/step-NNNNNN/state.pt   agent, optimizer, scheduler, step, RNG states, data order
    agent/            the trained agent in the TSPO-0.4B layout (CLIPModel weights + selector.*): tspo:agent=FOLDER
    selector.safetensors   the agent alone (bare keys), for tspo:agent=FILE,encoder=...
    tb/               TensorBoard scalars, when tensorboard is installed
"""
from __future__ import annotations

import dataclasses
import io
import json
import math
import os
import random
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from harness.errors import HarnessError
from harness.fileio import atomic_write
from harness.hashing import short_hash
from harness.train.data import FeatureEnv, make_source, mask_intervals
from samplers.tspo import DEFAULT_TAU, DEFAULT_WINDOW, TemporalAgent, agent_keys, select

LOGPROBS = ("official", "plackett-luce")
TEMPORAL_REWARDS = ("share", "coverage")
ON_ERROR = ("raise", "skip")
TRAIN_LOG, ROLLOUTS, WATCH, CONFIG, EVENTS = "train.jsonl", "rollouts.jsonl", "watch.jsonl", "config.json", \
    "events.jsonl"
CHECKPOINTS, AGENT, SELECTOR_FILE = "checkpoints", "agent", "selector.safetensors"
ADV_EPS = 1e-4  # added to the group std (official)
# Not part of a run's identity (a resume may change them): where it runs, how it reports and checkpoints, how
# the backbone batches; not what it computes. grad_accum enters as the global batch.
_NOT_IDENTITY = ("out", "stop_after", "device", "cache_dir", "decode_backend", "progress", "tensorboard",
                 "grad_accum", "save_every", "keep_checkpoints", "watch", "watch_every", "backbone_batch")


@dataclass
class TSPOTrainConfig:
    """Every hyper-parameter of a TSPO training run (defaults: the official run, tspo.md §4.1)."""

    out: str  # the run directory (rerun the same command to resume)
    data: str = "needle"  # "needle" (offline train split), "task:NAME", or a TSPO-10K .jsonl file
    task_args: dict = field(default_factory=dict)  # options of the task (needle: videos, questions_per_video, ...)
    video_root: str | None = None  # for a .jsonl file
    grid: str = "1fps"  # candidate grid of task videos (JSONL videos use the official training rule)
    limit: int | None = None  # first N questions only
    backbone: str = "mini-qwen2.5-vl"
    backbone_args: dict = field(default_factory=dict)
    backbone_batch: int | None = None  # rollouts per generate_batch call (None: a question's rollouts at once)
    encoder: str = "mini-clip"  # CLIP the agent reads (official: openai/clip-vit-large-patch14)
    init: str = "normal"  # "normal" (weights N(0, init_std), biases 0: official), "zero", or an agent file/folder
    init_std: float = 0.02
    frames: int = 16  # K for questions with a temporal reward (official training_sample_len)
    general_frames: int | None = None  # K for TSPO-10K "general" rows (None: frames // 2, as official)
    group_size: int = 8  # G rollouts per question (num_generations)
    window: int = DEFAULT_WINDOW
    tau_start: float = DEFAULT_TAU
    tau_end: float = 0.01
    logprob: str = "official"  # or "plackett-luce"
    temporal_reward: str = "share"  # official; "coverage": share of ground-truth intervals with a selected frame
    lr: float = 5e-4
    betas: tuple = (0.9, 0.999)
    eps: float = 1e-8
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    grad_accum: int = 2  # questions per process per optimizer step
    epochs: int = 1
    max_steps: int | None = None  # None: ceil(epochs * questions / global batch)
    seed: int = 42  # data order, haystacks, Gumbel noise, initial weights (official data_seed 42)
    save_every: int = 100
    keep_checkpoints: int = 8
    watch: list = field(default_factory=list)  # question ids whose logits are logged (default: the first question)
    watch_every: int = 10
    on_error: str = "raise"  # "skip": a question whose video cannot be read is logged and left out of its step
    device: str = "cpu"
    cache_dir: str = ".cache/features"
    decode_backend: str = "decord"
    tensorboard: bool = True  # also write TensorBoard scalars when tensorboard is installed
    progress: bool = True
    stop_after: int | None = None  # stop (with a checkpoint) after this many steps in this invocation

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


# ---------------------------------------------------------------------------------------------------------------
# The algorithm, as pure functions


def tau_at(step: int, max_steps: int, start: float = DEFAULT_TAU, end: float = 0.01) -> float:
    """Linear anneal: start at step 0, end at step max_steps (official: global_step / max_steps)."""
    return start - (start - end) * step / max(1, max_steps)


def lr_factor(step: int, max_steps: int) -> float:
    """Linear decay to 0 over max_steps with no warm-up (transformers' linear schedule, warm-up 0)."""
    return max(0.0, (max_steps - step) / max(1, max_steps))


def gumbel_noise(groups: int, length: int, generator: torch.Generator) -> torch.Tensor:
    """[groups, length] i.i.d. Gumbel(0, 1), float64 on the CPU: g = -log(E), E ~ Exp(1)."""
    return -torch.empty(groups, length, dtype=torch.float64).exponential_(generator=generator).log()


def gumbel_topk(logits: torch.Tensor, k: int, noise: torch.Tensor) -> torch.Tensor:
    """[G, k] candidate positions in the order drawn: the k largest of logits + noise, descending. (The
    official code takes top-k of softmax(logits + g), the same order.) Each row is a Plackett-Luce sample of k
    candidates without replacement from softmax(logits)."""
    perturbed = logits.detach().to("cpu", torch.float64)[None, :] + noise
    return torch.topk(perturbed, k, dim=-1).indices


def group_advantages(rewards: torch.Tensor, eps: float = ADV_EPS) -> torch.Tensor:
    """(r - mean) / (unbiased std + eps) over the group (last dim)."""
    rewards = torch.as_tensor(rewards, dtype=torch.float64)
    return (rewards - rewards.mean(-1, keepdim=True)) / (rewards.std(-1, keepdim=True) + eps)


def temporal_reward(mask, selections) -> torch.Tensor:
    """Share of each rollout's selected candidates inside the ground truth: [G] from mask [T] and [G, k]."""
    mask = torch.as_tensor(np.asarray(mask, bool))
    return mask[torch.as_tensor(selections)].to(torch.float64).mean(-1)


def coverage_reward(mask, selections) -> torch.Tensor:
    """Share of the ground truth's intervals (maximal runs of True in mask [T]) holding at least one of each
    rollout's selected candidates: [G]. Unlike `temporal_reward`, k frames inside one interval earn no more than
    one, so it pays for seeing every event a question needs (all appearances to count, both objects to order)."""
    intervals = mask_intervals(mask, np.arange(len(mask)))  # runs as [first, last + 1) positions
    if not intervals:
        return torch.zeros(len(selections), dtype=torch.float64)
    hits = [[any(a <= p < b for p in s) for a, b in intervals] for s in selections]
    return torch.tensor(np.mean(hits, axis=1), dtype=torch.float64)


def official_logprob(logits: torch.Tensor, ordered: torch.Tensor) -> torch.Tensor:
    """[G]: mean over the k selected candidates of log softmax(logits) (the official set log-prob)."""
    return torch.log_softmax(logits, -1)[ordered].mean(-1)


def plackett_luce_logprob(logits: torch.Tensor, ordered: torch.Tensor) -> torch.Tensor:
    """[G]: log-probability of each ordered draw without replacement, sum_k [s_ik - logsumexp(s over candidates
    not drawn before step k)]."""
    groups, k = ordered.shape
    length = logits.shape[-1]
    # taken[g, j, t]: candidate t was drawn before step j of rollout g
    drawn = torch.nn.functional.one_hot(ordered, length).to(torch.bool)  # [G, k, T]
    taken = torch.cumsum(drawn, dim=1) - drawn.to(torch.long) > 0
    remaining = logits[None, None, :].expand(groups, k, length).masked_fill(taken, float("-inf"))
    return (logits[ordered] - torch.logsumexp(remaining, dim=-1)).sum(-1)


def policy_loss(logits: torch.Tensor, ordered: torch.Tensor, advantages: torch.Tensor,
                logprob: str = "official") -> torch.Tensor:
    """(1/G) sum_g -A_g * logp_g (see the module docstring)."""
    if logprob == "official":
        lp = official_logprob(logits, ordered)
    elif logprob == "plackett-luce":
        lp = plackett_luce_logprob(logits, ordered)
    else:
        raise HarnessError(f"logprob {logprob!r} must be one of {', '.join(LOGPROBS)}")
    return -(advantages.to(lp.dtype).to(lp.device) * lp).mean()


def derive_seed(seed: int, *parts) -> int:
    """A 63-bit seed from the run seed and integer parts (a stream per purpose, question and step)."""
    state = np.random.SeedSequence([int(seed), *[int(p) for p in parts]]).generate_state(2, np.uint32)
    return int((int(state[0]) << 31) ^ int(state[1])) & ((1 << 63) - 1)


_STREAM = {"order": 1, "haystack": 2, "gumbel": 3, "init": 4, "watch": 5}


# ---------------------------------------------------------------------------------------------------------------
# Export


def export_agent(selector_state: dict, encoder: str, folder) -> Path:
    """Write the agent in the TSPO-0.4B layout: the encoder's CLIPModel weights plus `selector.*` in
    model.safetensors, its config (architectures ["TSPOModel"]) and processor files; loadable by
    `samplers.tspo.load_agent(folder)`, `CLIPModel.from_pretrained(folder)` and as `tspo:agent=FOLDER`.
    Weights keep the encoder's dtype (the official file is bf16). Written to a temporary folder, then renamed."""
    from safetensors.torch import save_file
    from transformers import CLIPModel, CLIPProcessor

    from harness.encoders import model_type
    from harness.miniworld import resolve_model

    source = resolve_model(encoder)
    if str(encoder).startswith("open_clip:") or model_type(source) != "clip":
        raise HarnessError(f"the TSPO-0.4B layout holds a transformers CLIPModel; encoder {encoder!r} is not one "
                           f"(use {SELECTOR_FILE} with tspo:agent=FILE,encoder={encoder})")
    folder = Path(folder)
    model = CLIPModel.from_pretrained(source)
    processor = CLIPProcessor.from_pretrained(source)
    state = {k: v.detach().cpu().clone().contiguous() for k, v in model.state_dict().items()}
    state.update({f"selector.{k}": v.detach().cpu().clone().contiguous() for k, v in selector_state.items()})
    tmp = folder.parent / f".{folder.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    config = model.config
    config.architectures = ["TSPOModel"]
    config.save_pretrained(tmp)
    processor.save_pretrained(tmp)
    save_file(state, str(tmp / "model.safetensors"), metadata={"format": "pt"})
    old = folder.parent / f".{folder.name}.old-{os.getpid()}"
    if folder.exists():
        folder.rename(old)
    tmp.rename(folder)
    shutil.rmtree(old, ignore_errors=True)
    return folder


def save_selector(selector_state: dict, path) -> Path:
    from safetensors.torch import save

    atomic_write(path, save({k: v.detach().cpu().clone().contiguous() for k, v in selector_state.items()}))
    return Path(path)


# ---------------------------------------------------------------------------------------------------------------
# The trainer


def _jsonl_append(path: Path, rows: list[dict]) -> None:
    if rows:
        with open(path, "a", encoding="utf-8") as f:
            f.write("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
            f.flush()


def _truncate_jsonl(path: Path, keep) -> None:
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


def _stats(values) -> dict:
    v = np.asarray(values, np.float64)
    if v.size == 0:
        return {"mean": None, "std": None, "min": None, "max": None}
    return {"mean": float(v.mean()), "std": float(v.std()), "min": float(v.min()), "max": float(v.max())}


def _mean(values):
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else None


class Trainer:
    """One training run. `train_tspo(cfg)` is `Trainer(cfg).run()`; tests drive the steps directly."""

    def __init__(self, cfg: TSPOTrainConfig, backbone=None, source=None):
        import torch.distributed as dist

        self.cfg = cfg.validate()
        self.dist = dist
        self._owns_group = False
        world = int(os.environ.get("WORLD_SIZE", "1"))
        device = cfg.device
        if world > 1 and not dist.is_initialized():
            backend = "gloo" if torch.device(device).type == "cpu" else "nccl"
            if backend == "nccl":
                device = f"{torch.device(device).type}:{int(os.environ.get('LOCAL_RANK', '0'))}"
                torch.cuda.set_device(torch.device(device))
            dist.init_process_group(backend)
            self._owns_group = True
        self.distributed = dist.is_initialized() and dist.get_world_size() > 1
        self.rank = dist.get_rank() if self.distributed else 0
        self.world = dist.get_world_size() if self.distributed else 1
        self.device = torch.device(device)
        self.run_dir = Path(cfg.out).expanduser()

        self.source = source if source is not None else make_source(cfg.data, cfg.task_args, cfg.video_root,
                                                                    cfg.grid, cfg.limit)
        self.items = self.source.items()
        self.global_batch = self.world * cfg.grad_accum
        n = len(self.items)
        self.total_positions = cfg.epochs * n if cfg.max_steps is None else cfg.max_steps * self.global_batch
        self.max_steps = cfg.max_steps or math.ceil(cfg.epochs * n / self.global_batch)
        self._orders: dict[int, np.ndarray] = {}

        from harness.features import FeatureStore

        self.env = FeatureEnv(FeatureStore(Path(cfg.cache_dir), str(self.device), "float32"), cfg.encoder,
                              cfg.decode_backend)
        scorer = self.env.scorer
        _freeze(getattr(scorer, "model", None))
        self.encoder_id = scorer.encoder_id
        if backbone is None:
            from harness.registry import BACKBONES

            backbone = BACKBONES.create(cfg.backbone, device=str(self.device), **cfg.backbone_args)
        self.backbone = backbone
        for module in _modules_of(backbone):
            _freeze(module)

        self.agent = self._initial_agent(scorer.dim).to(self.device).train()
        self.params = list(self.agent.parameters())
        self.optimizer = torch.optim.AdamW(self.params, lr=cfg.lr, betas=cfg.betas, eps=cfg.eps,
                                           weight_decay=cfg.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer,
                                                           lambda s: lr_factor(s, self.max_steps))
        self.step = 0
        ids = {it.id: i for i, it in enumerate(self.items)}
        unknown = [w for w in cfg.watch if w not in ids]
        if unknown:
            raise HarnessError(f"watch: no question {unknown[0]!r} in the training data")
        self.watch = [ids[w] for w in cfg.watch] or [0]
        self._tb = None

    # -- setup ----------------------------------------------------------------------------------------------------
    def _initial_agent(self, dim: int) -> TemporalAgent:
        cfg = self.cfg
        if cfg.init == "normal":
            generator = torch.Generator().manual_seed(derive_seed(cfg.seed, _STREAM["init"]))
            return TemporalAgent.initialised(dim, std=cfg.init_std, generator=generator)
        if cfg.init == "zero":  # note: from all zeros only the last bias gets a gradient at first
            return TemporalAgent.zeros(dim)
        from samplers.tspo import load_agent

        agent = load_agent(cfg.init).float()
        if agent.dim != dim:
            raise HarnessError(f"init agent {cfg.init!r} has dim {agent.dim}, encoder {cfg.encoder!r} gives {dim}")
        return agent

    def identity(self) -> dict:
        """What decides the trajectory: a resumed run must match it."""
        fields = {k: v for k, v in self.cfg.to_json().items() if k not in _NOT_IDENTITY}
        return {"config": fields, "global_batch": self.global_batch, "source": self.source.config(),
                "encoder_id": self.encoder_id, "backbone": {"name": getattr(self.backbone, "name", "") or
                                                             type(self.backbone).__name__,
                                                             "config": self.backbone.config()},
                "max_steps": self.max_steps, "total_positions": self.total_positions}

    def _order(self, epoch: int) -> np.ndarray:
        if epoch not in self._orders:
            rng = np.random.default_rng(derive_seed(self.cfg.seed, _STREAM["order"], epoch))
            self._orders[epoch] = rng.permutation(len(self.items))
        return self._orders[epoch]

    def positions(self, step: int) -> list[int]:
        """The data-order positions of a step (all processes)."""
        start = step * self.global_batch
        return list(range(start, min(start + self.global_batch, self.total_positions)))

    def item_index(self, position: int) -> int:
        n = len(self.items)
        return int(self._order(position // n)[position % n])

    # -- one question -----------------------------------------------------------------------------------------------
    def _episode(self, index: int, stream: str, position: int):
        rng = np.random.default_rng(derive_seed(self.cfg.seed, _STREAM[stream], position))
        return self.source.episode(self.items[index], self.env, rng, self.cfg.frames, self.cfg.k_general)

    def _logits(self, ep, tau: float) -> torch.Tensor:
        return self.agent(torch.from_numpy(ep.features), torch.from_numpy(ep.text),
                          torch.from_numpy(np.asarray(ep.scores, np.float32)), window_size=self.cfg.window, tau=tau)

    def _answers(self, ep, selections: list[tuple[int, ...]]) -> list[str]:
        """The backbone's answer to each rollout; equal frame sets are answered once (greedy decoding gives the
        same text), the rest in batched calls."""
        unique = list(dict.fromkeys(selections))
        union = sorted(set().union(*unique))
        frames = ep.decode(union)
        where = {p: i for i, p in enumerate(union)}
        prompt = self.source.prompt(ep.item, getattr(self.backbone, "prompt_style", "default"))
        requests = [(frames[[where[p] for p in s]], [float(ep.timestamps[p]) for p in s], prompt) for s in unique]
        size = self.cfg.backbone_batch or len(requests)
        texts = []
        for start in range(0, len(requests), size):
            batch = requests[start:start + size]
            generate = getattr(self.backbone, "generate_batch", None)
            out = list(generate(batch)) if generate else [self.backbone.generate(*r) for r in batch]
            if len(out) != len(batch):
                raise HarnessError(f"backbone returned {len(out)} answers for {len(batch)} requests")
            texts += out
        answer = dict(zip(unique, texts))
        return [answer[s] for s in selections]

    def rollout(self, position: int, tau: float) -> tuple[torch.Tensor, dict]:
        """Build the question's episode, draw G rollouts, answer, reward; returns (loss with grad, record)."""
        index = self.item_index(position)
        item = self.items[index]
        ep = self._episode(index, "haystack", position)
        try:
            logits = self._logits(ep, tau)
            generator = torch.Generator().manual_seed(derive_seed(self.cfg.seed, _STREAM["gumbel"], position))
            ordered = gumbel_topk(logits, ep.k, gumbel_noise(self.cfg.group_size, len(ep.features), generator))
            selections = [tuple(sorted(int(i) for i in row)) for row in ordered.tolist()]
            answers = self._answers(ep, selections)
            accuracy = torch.tensor([float(self.source.score(item, a)) for a in answers], dtype=torch.float64)
            reward = coverage_reward if self.cfg.temporal_reward == "coverage" else temporal_reward
            temporal = reward(ep.mask, selections) if ep.mask is not None else None
            total = accuracy + temporal if temporal is not None else accuracy
            advantages = group_advantages(total)
            loss = policy_loss(logits, ordered.to(logits.device), advantages, self.cfg.logprob)
            with torch.no_grad():
                probs = torch.softmax(logits.double(), -1)
                entropy = float(-(probs * torch.log(probs.clamp_min(1e-300))).sum())
            n = len(ep.features)
            norm = np.asarray(selections, np.float64) / max(1, n - 1)
            record = {
                "position": position, "item": item.id, "kind": item.kind, "T": n, "k": ep.k,
                "selections": [list(s) for s in selections], "answers": [str(a)[:200] for a in answers],
                "accuracy": accuracy.tolist(), "temporal": None if temporal is None else temporal.tolist(),
                "total": total.tolist(), "advantages": advantages.tolist(), "loss": float(loss.detach()),
                "unique_sets": len(set(selections)), "entropy": entropy, "max_prob": float(probs.max()),
                "mean_position": float(norm.mean()), "spread": float(norm.std(axis=1).mean()),
            }
        finally:
            ep.close()
        return loss, record

    # -- one step ------------------------------------------------------------------------------------------------
    def accumulate(self, step: int) -> list[dict]:
        """Forward and backward of this process's questions of `step` (gradients summed over questions)."""
        tau = tau_at(step, self.max_steps, self.cfg.tau_start, self.cfg.tau_end)
        mine = self.positions(step)[self.rank::self.world]
        for p in self.params:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
        records = []
        for position in mine:
            try:
                loss, record = self.rollout(position, tau)
            except HarnessError as e:
                if self.cfg.on_error == "raise":
                    raise
                records.append({"position": position, "item": self.items[self.item_index(position)].id,
                                "error": " ".join(str(e).split())})
                continue
            loss.backward()
            records.append(record)
        return records

    def apply(self, step: int, records: list[dict]) -> tuple[list[dict], float | None, float]:
        """All-reduce, average over the step's answered questions, clip, AdamW, schedule. Returns every process's
        records (ordered by position), the gradient norm before clipping, and the lr used."""
        ok = torch.tensor([sum("error" not in r for r in records)], dtype=torch.float64)
        if self.distributed:
            for p in self.params:
                self.dist.all_reduce(p.grad)
            self.dist.all_reduce(ok)
            gathered = [None] * self.world
            self.dist.all_gather_object(gathered, records)
            records = [r for part in gathered for r in part]
        records = sorted(records, key=lambda r: r["position"])
        lr = float(self.optimizer.param_groups[0]["lr"])
        grad_norm = None
        if ok.item() > 0:
            for p in self.params:
                p.grad.div_(ok.item())
            grad_norm = float(torch.nn.utils.clip_grad_norm_(self.params, self.cfg.max_grad_norm))
            self.optimizer.step()
        self.scheduler.step()
        for p in self.params:
            p.grad.zero_()
        self.step = step + 1
        return records, grad_norm, lr

    def step_record(self, step: int, records: list[dict], grad_norm, lr: float, seconds: float) -> dict:
        done = [r for r in records if "error" not in r]
        acc = [v for r in done for v in r["accuracy"]]
        tmp = [v for r in done if r["temporal"] is not None for v in r["temporal"]]
        tot = [v for r in done for v in r["total"]]
        adv = [v for r in done for v in r["advantages"]]
        n = len(self.items)
        return {
            "step": step + 1, "epoch": self.positions(step)[0] / n, "lr": lr,
            "tau": tau_at(step, self.max_steps, self.cfg.tau_start, self.cfg.tau_end),
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

    # -- watched questions ---------------------------------------------------------------------------------------
    def watch_records(self, step: int) -> list[dict]:
        rows = []
        tau = tau_at(step, self.max_steps, self.cfg.tau_start, self.cfg.tau_end)
        for index in self.watch:
            try:
                ep = self._episode(index, "watch", index)  # a fixed haystack per watched question
            except HarnessError as e:
                if self.cfg.on_error == "raise":
                    raise
                print(f"harness: watched question {self.items[index].id}: {e}", file=sys.stderr)
                continue
            try:
                with torch.no_grad():
                    logits = self._logits(ep, tau).double().cpu()
                # what the policy samples at this step (own seed: the training streams stay untouched)
                generator = torch.Generator().manual_seed(derive_seed(self.cfg.seed, _STREAM["watch"], index, step))
                samples = gumbel_topk(logits, ep.k, gumbel_noise(self.cfg.group_size, len(logits), generator))
                rows.append({"step": step, "item": self.items[index].id, "tau": tau, "k": ep.k,
                             "times": ep.timestamps.tolist(), "score": (logits * tau).tolist(),
                             "topk": select(logits, ep.k, "topk"),
                             "samples": [sorted(int(i) for i in row) for row in samples.tolist()],
                             "mask": None if ep.mask is None else ep.mask.astype(int).tolist(),
                             "evidence": [list(iv) for iv in ep.evidence]})
            finally:
                ep.close()
        return rows

    # -- checkpoints ---------------------------------------------------------------------------------------------
    def checkpoint_dir(self, step: int) -> Path:
        return self.run_dir / CHECKPOINTS / f"step-{step:06d}"

    def checkpoints(self) -> list[Path]:
        root = self.run_dir / CHECKPOINTS
        return sorted(p for p in root.glob("step-*") if (p / "state.pt").is_file()) if root.is_dir() else []

    def save_checkpoint(self) -> Path:
        state = {"agent": self.agent.state_dict(), "optimizer": self.optimizer.state_dict(),
                 "scheduler": self.scheduler.state_dict(), "step": self.step,
                 "rng": {"torch": torch.get_rng_state(), "numpy": np.random.get_state(),
                         "python": random.getstate()},
                 "data_order": {"seed": self.cfg.seed, "epochs_seen": sorted(self._orders),
                                "next_position": self.step * self.global_batch},
                 "identity_hash": short_hash(self.identity(), 16)}
        buffer = io.BytesIO()
        torch.save(state, buffer)
        folder = self.checkpoint_dir(self.step)
        atomic_write(folder / "state.pt", buffer.getvalue())
        for old in self.checkpoints()[:-self.cfg.keep_checkpoints]:
            shutil.rmtree(old, ignore_errors=True)
        return folder

    def load_checkpoint(self, folder: Path) -> None:
        try:
            state = torch.load(folder / "state.pt", map_location="cpu", weights_only=False)
        except Exception as e:
            raise HarnessError(f"cannot read checkpoint {folder}: {' '.join(str(e).split())}") from None
        if state.get("identity_hash") != short_hash(self.identity(), 16):
            raise HarnessError(f"checkpoint {folder} belongs to a different training configuration")
        self.agent.load_state_dict(state["agent"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.step = int(state["step"])
        torch.set_rng_state(state["rng"]["torch"])
        np.random.set_state(state["rng"]["numpy"])
        random.setstate(state["rng"]["python"])

    # -- the run ---------------------------------------------------------------------------------------------------
    def _barrier(self):
        if self.distributed:
            self.dist.barrier()

    def open(self) -> None:
        """Create the run directory or resume it (the latest checkpoint; logs cut back to it)."""
        config_path = self.run_dir / CONFIG
        identity = self.identity()
        if self.rank == 0:
            resumed = config_path.exists()
            if resumed:
                try:
                    old = json.loads(config_path.read_text())
                except (OSError, ValueError) as e:
                    raise HarnessError(f"{config_path}: unreadable ({' '.join(str(e).split())})") from None
                if old.get("identity_hash") != short_hash(identity, 16):
                    raise HarnessError(f"{self.run_dir} holds a run with a different training configuration; "
                                       f"use another --out")
            else:
                from harness.config import package_versions

                self.run_dir.mkdir(parents=True, exist_ok=True)
                atomic_write(config_path, json.dumps(
                    {"train": self.cfg.to_json(), "identity": identity, "identity_hash": short_hash(identity, 16),
                     "algorithm": "tspo", "questions": len(self.items), "world_size": self.world,
                     "global_batch": self.global_batch, "max_steps": self.max_steps,
                     "versions": package_versions()}, indent=2, sort_keys=True, default=str) + "\n")
        self._barrier()
        latest = self.checkpoints()
        if latest:
            self.load_checkpoint(latest[-1])
        if self.rank == 0:
            step = self.step
            _truncate_jsonl(self.run_dir / TRAIN_LOG, lambda r: r["step"] <= step)
            _truncate_jsonl(self.run_dir / ROLLOUTS, lambda r: r["step"] <= step)
            # the step-0 watch rows are written again when the run starts from scratch
            _truncate_jsonl(self.run_dir / WATCH, lambda r: 0 < step and r["step"] <= step)
            _jsonl_append(self.run_dir / EVENTS, [{"event": "resume" if latest else "start", "time": time.time(),
                                                   "step": step, "world_size": self.world,
                                                   "max_steps": self.max_steps}])
            self._tb = _tensorboard(self.run_dir / "tb") if self.cfg.tensorboard else None
        self._barrier()

    def run(self) -> Path:
        from harness.progress import progress_bar

        try:
            self.open()
            if self.step == 0 and self.rank == 0:
                _jsonl_append(self.run_dir / WATCH, self.watch_records(0))
            budget = self.cfg.stop_after
            with progress_bar(self.cfg.progress and self.rank == 0, "train tspo", self.max_steps - self.step,
                              unit="steps") as advance:
                while self.step < self.max_steps and (budget is None or budget > 0):
                    step = self.step
                    t0 = time.perf_counter()
                    records = self.accumulate(step)
                    records, grad_norm, lr = self.apply(step, records)
                    if self.rank == 0:
                        row = self.step_record(step, records, grad_norm, lr, time.perf_counter() - t0)
                        _jsonl_append(self.run_dir / TRAIN_LOG, [row])
                        _jsonl_append(self.run_dir / ROLLOUTS, [{"step": self.step, **r} for r in records])
                        self._tensorboard(row)
                        if self.step % self.cfg.watch_every == 0 or self.step == self.max_steps:
                            _jsonl_append(self.run_dir / WATCH, self.watch_records(self.step))
                    budget = None if budget is None else budget - 1
                    if self.step % self.cfg.save_every == 0 or self.step == self.max_steps or budget == 0:
                        if self.rank == 0:
                            self.save_checkpoint()
                        self._barrier()
                    advance()
            if self.step == self.max_steps and self.rank == 0:
                self.export()
            self._barrier()
        finally:
            if self._tb is not None:
                self._tb.close()
            if self._owns_group:
                self.dist.destroy_process_group()
        return self.run_dir

    def export(self) -> None:
        state = self.agent.state_dict()
        save_selector(state, self.run_dir / SELECTOR_FILE)
        try:
            export_agent(state, self.cfg.encoder, self.run_dir / AGENT)
        except HarnessError as e:  # e.g. an open_clip encoder: the bare selector file is the export
            print(f"harness: {e}", file=sys.stderr)

    def _tensorboard(self, row: dict) -> None:
        if self._tb is None:
            return
        flat = {"loss": row["loss"], "lr": row["lr"], "tau": row["tau"], "grad_norm": row["grad_norm"],
                **{f"reward/{k}": v for k, v in row["reward"].items()},
                **{f"advantage/{k}": v for k, v in row["advantage"].items()},
                **{f"selected/{k}": v for k, v in row["selected"].items()}}
        for key, value in flat.items():
            if value is not None:
                self._tb.add_scalar(key, value, row["step"])
        self._tb.flush()


def _tensorboard(folder: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard is optional: the JSONL logs hold everything
        return None
    return SummaryWriter(str(folder))


def _freeze(module) -> None:
    if isinstance(module, torch.nn.Module):
        module.requires_grad_(False)
        module.eval()


def _modules_of(backbone) -> list:
    """The torch modules a backbone holds (its attributes), so they can be frozen."""
    if isinstance(backbone, torch.nn.Module):
        return [backbone]
    return [v for v in vars(backbone).values() if isinstance(v, torch.nn.Module)]


def train_tspo(cfg: TSPOTrainConfig, backbone=None, source=None) -> Path:
    """Train (or resume) a TSPO agent; returns the run directory. `backbone`/`source`: ready objects instead of
    the names in `cfg` (tests, notebooks). Under `torchrun` every process calls this with the same config."""
    return Trainer(cfg, backbone=backbone, source=source).run()


def read_log(run_dir, name: str = TRAIN_LOG) -> list[dict]:
    from harness.store import read_jsonl

    return read_jsonl(Path(run_dir) / name)


__all__ = ["TSPOTrainConfig", "Trainer", "train_tspo", "tau_at", "lr_factor", "gumbel_noise", "gumbel_topk",
           "group_advantages", "temporal_reward", "coverage_reward", "official_logprob", "plackett_luce_logprob", "policy_loss",
           "derive_seed", "export_agent", "save_selector", "read_log", "agent_keys"]
