"""The TSPO trainer: group policy optimisation of the temporal agent (the TSPO paper, arXiv 2508.04369; the official
trainer src/open_tspo/trainer/tspo_trainer.py of Hui-design/TSPO).

One optimizer step takes `global_batch` questions (= processes x `grad_accum`). For each question:

    logits = agent(CLIP image features, text feature, clip scores, window, tau_t)   # features: once per step
    G rollouts: Gumbel-top-k over the logits (seeded per question and step)        # = Plackett-Luce samples
    the frozen backbone answers greedily on each rollout's frames (one batched call; equal sets answered once)
    rewards, group-normalised advantages and the loss: harness.train.objective

tau_t = tau_start - (tau_start - tau_end) * step / max_steps; AdamW (lr 5e-4, betas 0.9/0.999, eps 1e-8, no weight
decay), linear decay to 0 with no warm-up, gradient clipping at 1.0: the HF Trainer defaults the official run used.
Only the agent has parameters here: CLIP runs in the feature store and the backbone only generates text.

Determinism: the data order (per epoch), each question's haystack and its Gumbel noise come from generators seeded
by (seed, position in the data order), never from global RNG state. So `torchrun` with W processes and
`grad_accum` a gives the same trajectory as one process with grad_accum W*a (the per-question gradients are
summed, all-reduced and divided by the number of questions), and a resumed run continues the same trajectory.
The run directory's files: harness.train.rundir.
"""
from __future__ import annotations

import math
import os
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch

from harness.errors import HarnessError
from harness.train.config import NOT_IDENTITY, TSPOTrainConfig
from harness.train.data import make_source
from harness.train.episode import FeatureEnv
from harness.train.export import export_agent, save_selector
from harness.train.objective import (STREAM, coverage_reward, derive_seed, group_advantages, gumbel_noise,
                                     gumbel_topk, lr_factor, policy_loss, tau_at, temporal_reward)
from harness.train.checkpoint import checkpoint_dirs, read_checkpoint, write_checkpoint
from harness.train.rundir import (AGENT, EVENTS, ROLLOUTS, SELECTOR_FILE, TRAIN_LOG, WATCH, claim, jsonl_append,
                                  open_tensorboard, step_row, tensorboard_step, truncate_jsonl)
from harness.util.hashing import short_hash
from samplers.tspo.agent import TemporalAgent
from samplers.tspo.rules import rule_positions


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

        from harness.features.store import FeatureStore

        self.env = FeatureEnv(FeatureStore(Path(cfg.cache_dir), str(self.device), "float32"), cfg.encoder,
                              cfg.decode_backend)
        scorer = self.env.scorer
        _freeze(scorer.model)
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
            generator = torch.Generator().manual_seed(derive_seed(cfg.seed, STREAM["init"]))
            return TemporalAgent.initialised(dim, std=cfg.init_std, generator=generator)
        if cfg.init == "zero":  # note: from all zeros only the last bias gets a gradient at first
            return TemporalAgent.zeros(dim)
        from samplers.tspo.weights import load_agent

        agent = load_agent(cfg.init).float()
        if agent.dim != dim:
            raise HarnessError(f"init agent {cfg.init!r} has dim {agent.dim}, encoder {cfg.encoder!r} gives {dim}")
        return agent

    def identity(self) -> dict:
        """What decides the trajectory: a resumed run must match it."""
        fields = {k: v for k, v in self.cfg.to_json().items() if k not in NOT_IDENTITY}
        return {"config": fields, "global_batch": self.global_batch, "source": self.source.config(),
                "encoder_id": self.encoder_id,
                "backbone": {"name": self.backbone.name or type(self.backbone).__name__,
                             "config": self.backbone.config()},
                "max_steps": self.max_steps, "total_positions": self.total_positions}

    def _order(self, epoch: int) -> np.ndarray:
        if epoch not in self._orders:
            rng = np.random.default_rng(derive_seed(self.cfg.seed, STREAM["order"], epoch))
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
        rng = np.random.default_rng(derive_seed(self.cfg.seed, STREAM[stream], position))
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
        prompt = self.source.prompt(ep.item, self.backbone.prompt_style)
        requests = [(frames[[where[p] for p in s]], [float(ep.timestamps[p]) for p in s], prompt) for s in unique]
        size = self.cfg.backbone_batch or len(requests)
        texts = []
        for start in range(0, len(requests), size):
            batch = requests[start:start + size]
            out = list(self.backbone.generate_batch(batch))
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
            generator = torch.Generator().manual_seed(derive_seed(self.cfg.seed, STREAM["gumbel"], position))
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
                generator = torch.Generator().manual_seed(derive_seed(self.cfg.seed, STREAM["watch"], index, step))
                samples = gumbel_topk(logits, ep.k, gumbel_noise(self.cfg.group_size, len(logits), generator))
                rows.append({"step": step, "item": self.items[index].id, "tau": tau, "k": ep.k,
                             "times": ep.timestamps.tolist(), "score": (logits * tau).tolist(),
                             "topk": rule_positions(logits, ep.k, "topk"),
                             "samples": [sorted(int(i) for i in row) for row in samples.tolist()],
                             "mask": None if ep.mask is None else ep.mask.astype(int).tolist(),
                             "evidence": [list(iv) for iv in ep.evidence]})
            finally:
                ep.close()
        return rows

    # -- checkpoints ---------------------------------------------------------------------------------------------
    def save_checkpoint(self) -> Path:
        state = {"agent": self.agent.state_dict(), "optimizer": self.optimizer.state_dict(),
                 "scheduler": self.scheduler.state_dict(), "step": self.step,
                 "rng": {"torch": torch.get_rng_state(), "numpy": np.random.get_state(),
                         "python": random.getstate()},
                 "data_order": {"seed": self.cfg.seed, "epochs_seen": sorted(self._orders),
                                "next_position": self.step * self.global_batch},
                 "identity_hash": short_hash(self.identity(), 16)}
        return write_checkpoint(self.run_dir, self.step, state, self.cfg.keep_checkpoints)

    def load_checkpoint(self, folder: Path) -> None:
        state = read_checkpoint(folder)
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
        identity = self.identity()
        if self.rank == 0:
            from harness.config import package_versions

            claim(self.run_dir, short_hash(identity, 16), lambda: {
                "train": self.cfg.to_json(), "identity": identity, "algorithm": "tspo", "questions": len(self.items),
                "world_size": self.world, "global_batch": self.global_batch, "max_steps": self.max_steps,
                "versions": package_versions()})
        self._barrier()
        latest = checkpoint_dirs(self.run_dir)
        if latest:
            self.load_checkpoint(latest[-1])
        if self.rank == 0:
            step = self.step
            truncate_jsonl(self.run_dir / TRAIN_LOG, lambda r: r["step"] <= step)
            truncate_jsonl(self.run_dir / ROLLOUTS, lambda r: r["step"] <= step)
            # the step-0 watch rows are written again when the run starts from scratch
            truncate_jsonl(self.run_dir / WATCH, lambda r: 0 < step and r["step"] <= step)
            jsonl_append(self.run_dir / EVENTS, [{"event": "resume" if latest else "start", "time": time.time(),
                                                   "step": step, "world_size": self.world,
                                                   "max_steps": self.max_steps}])
            self._tb = open_tensorboard(self.run_dir / "tb") if self.cfg.tensorboard else None
        self._barrier()

    def run(self) -> Path:
        from harness.util.progress import progress_bar

        try:
            self.open()
            if self.step == 0 and self.rank == 0:
                jsonl_append(self.run_dir / WATCH, self.watch_records(0))
            budget = self.cfg.stop_after
            with progress_bar(self.cfg.progress and self.rank == 0, "train tspo", self.max_steps - self.step,
                              unit="steps") as advance:
                while self.step < self.max_steps and (budget is None or budget > 0):
                    step = self.step
                    t0 = time.perf_counter()
                    records = self.accumulate(step)
                    records, grad_norm, lr = self.apply(step, records)
                    if self.rank == 0:
                        row = step_row(step, self.positions(step)[0] / len(self.items), lr,
                                       tau_at(step, self.max_steps, self.cfg.tau_start, self.cfg.tau_end), records,
                                       grad_norm, time.perf_counter() - t0)
                        jsonl_append(self.run_dir / TRAIN_LOG, [row])
                        jsonl_append(self.run_dir / ROLLOUTS, [{"step": self.step, **r} for r in records])
                        if self._tb is not None:
                            tensorboard_step(self._tb, row)
                        if self.step % self.cfg.watch_every == 0 or self.step == self.max_steps:
                            jsonl_append(self.run_dir / WATCH, self.watch_records(self.step))
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
