"""The TSPO objective as pure functions: temperature and learning-rate schedules, Gumbel top-k rollouts, rewards,
group-normalised advantages, rollout log-probabilities and the policy-gradient loss.

For one question with G rollouts of k frames each (the TSPO paper, arXiv 2508.04369, and the official trainer
src/open_tspo/trainer/tspo_trainer.py):

    r_g = accuracy_g + temporal_g (share of the k frames inside the ground truth; or, with temporal_reward
          "coverage", share of the ground-truth intervals that hold a selected frame), temporal only where known
    A_g = (r_g - mean r) / (std r + 1e-4)           (std unbiased, as torch.std)
    loss = (1/G) sum_g -A_g * logp_g
        logp_g = mean_k log softmax(logits)[i_gk]                  official (default)
        logp_g = sum_k [s_{i_gk} - logsumexp_{j not in i_g<k} s_j]  plackett-luce: the sampled ordered set exactly

The official loss value is -mean(A) (about 0, from exp(logp - stopgrad(logp))); this trainer reports the surrogate
(1/G) sum -A_g logp_g instead, whose gradient is the same and whose value says something.
"""
from __future__ import annotations

import numpy as np
import torch

from harness.errors import HarnessError
from harness.train.config import LOGPROBS
from harness.train.episode import mask_intervals
from samplers.tspo.settings import DEFAULT_TAU

ADV_EPS = 1e-4  # added to the group std (official)
# one random stream per purpose: derive_seed(seed, STREAM[purpose], question position or step, ...)
STREAM = {"order": 1, "haystack": 2, "gumbel": 3, "init": 4, "watch": 5}


def tau_at(step: int, max_steps: int, start: float = DEFAULT_TAU, end: float = 0.01) -> float:
    """Linear anneal: start at step 0, end at step max_steps (official: global_step / max_steps)."""
    return start - (start - end) * step / max(1, max_steps)


def lr_factor(step: int, max_steps: int) -> float:
    """Linear decay to 0 over max_steps with no warm-up (transformers' linear schedule, warm-up 0)."""
    return max(0.0, (max_steps - step) / max(1, max_steps))


def derive_seed(seed: int, *parts) -> int:
    """A 63-bit seed from the run seed and integer parts (a stream per purpose, question and step)."""
    state = np.random.SeedSequence([int(seed), *[int(p) for p in parts]]).generate_state(2, np.uint32)
    return int((int(state[0]) << 31) ^ int(state[1])) & ((1 << 63) - 1)


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
