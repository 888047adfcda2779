"""The selector network of the official TSPO code (`MultiModal_Align` in Hui-design/TSPO `model/temporal_agent.py`):
windowed self-attention over per-candidate CLIP features, an MLP, and a cosine with the query."""
from __future__ import annotations

import math
from typing import Mapping

import torch
from torch import nn

from harness.errors import HarnessError
from harness.util.text import few
from samplers.tspo.settings import COSINE_EPS, DEFAULT_DIM, DEFAULT_TAU, DEFAULT_WINDOW, MASKED_SCORE, NUM_HEADS



def positional_encoding(length: int, dim: int, dtype: torch.dtype = torch.float32, device=None) -> torch.Tensor:
    """[length, dim] sinusoids, sin on even and cos on odd channels, at positions t / length (so in [0, 1))."""
    if dim % 2:
        raise ValueError(f"positional encoding needs an even feature dim, got {dim}")
    # float64 only when asked for: some devices lack it, and the official code computes it in float32
    work = torch.float64 if dtype == torch.float64 else torch.float32
    position = torch.arange(length, dtype=work, device=device)[:, None] / length
    frequency = torch.exp(torch.arange(0, dim, 2, dtype=work, device=device) * (-math.log(10000.0) / dim))
    pe = torch.empty(length, dim, dtype=work, device=device)
    pe[:, 0::2] = torch.sin(position * frequency)
    pe[:, 1::2] = torch.cos(position * frequency)
    return pe.to(dtype)


def window_bounds(length: int, window: int) -> tuple[torch.Tensor, torch.Tensor]:
    """First and last column each row attends to. The official mask sets columns clamp(j - w//2 + k, 0, T-1) for
    k < w; clamping consecutive integers gives a contiguous range, so the window shrinks at the edges."""
    if window < 1:
        raise ValueError(f"window size must be at least 1, got {window}")
    rows = torch.arange(length)
    first = (rows - window // 2).clamp(0, length - 1)
    last = (rows - window // 2 + window - 1).clamp(0, length - 1)
    return first, last


def window_mask(length: int, window: int) -> torch.Tensor:
    """[length, length] bool, True where row j may attend to column c."""
    first, last = window_bounds(length, window)
    columns = torch.arange(length)
    return (columns[None, :] >= first[:, None]) & (columns[None, :] <= last[:, None])


class LocalSelfAttention(nn.Module):
    """`temporal.*` of the checkpoint: multi-head self-attention restricted to a window, with no output projection.

    Attribute names are the official ones so state dicts load strictly. `ffn_o` is never used in the forward (the
    official code defines and saves it but does not call it); it is kept only so checkpoints load.
    """

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"feature dim {dim} is not divisible by {num_heads} heads")
        self.num_heads, self.head_dim = num_heads, dim // num_heads
        self.Self_q = nn.Linear(dim, dim)
        self.Self_k = nn.Linear(dim, dim)
        self.Self_v = nn.Linear(dim, dim)
        self.ffn_o = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, window: int) -> torch.Tensor:
        length, dim = x.shape
        heads = (length, self.num_heads, self.head_dim)
        q, k, v = (proj(x).view(heads) for proj in (self.Self_q, self.Self_k, self.Self_v))
        # Banded evaluation of the official dense masked softmax: a masked score of -1e6 gets exactly zero weight,
        # so only the <= w columns in the window matter. Memory stays O(T·D) where the dense form is O(T²) per head
        # (about 34 GB for a 9-hour video at 1 fps).
        first, last = window_bounds(length, window)
        rows = torch.arange(length, device=x.device)
        first, last = first.to(x.device), last.to(x.device)
        # column = row + r for the offsets r inside the window of some row and inside the video
        offsets = range(max(-(window // 2), -(length - 1)), min(window - window // 2 - 1, length - 1) + 1)
        valid = torch.stack([(rows + r >= first) & (rows + r <= last) for r in offsets], dim=-1)  # [T, R]
        # Zero rows around k and v make "row + r" a slice (a view, no gather); they only meet masked scores.
        before, after = -offsets.start, offsets.stop - 1
        k, v = (torch.cat([t.new_zeros(before, *heads[1:]), t, t.new_zeros(after, *heads[1:])]) for t in (k, v))
        shifted = [slice(before + r, before + r + length) for r in offsets]
        scale = self.head_dim ** 0.5
        scores = torch.stack([(q * k[s]).sum(-1) / scale for s in shifted], dim=-1)  # [T, H, R]
        scores = scores.masked_fill(~valid[:, None, :], MASKED_SCORE)
        weights = torch.softmax(scores, dim=-1)
        context = sum(weights[..., i, None] * v[s] for i, s in enumerate(shifted))  # [T, H, head_dim]
        return context.reshape(length, dim)


class TemporalAgent(nn.Module):
    """The TSPO selector (`MultiModal_Align`), without its `selector.` prefix. Device and dtype follow the module:
    inputs are moved to the parameters' device and dtype.

    State-dict keys: temporal.Self_{q,k,v}.{weight,bias}, temporal.ffn_o.{weight,bias} (unused), mlp.0.{weight,bias},
    mlp.2.{weight,bias}; 6·(D² + D) parameters, 3,543,552 for D = 768.
    """

    def __init__(self, dim: int = DEFAULT_DIM, num_heads: int = NUM_HEADS):
        super().__init__()
        self.dim = dim
        self.temporal = LocalSelfAttention(dim, num_heads)
        self.mlp = nn.Sequential(nn.Linear(dim, dim), nn.ReLU(), nn.Linear(dim, dim))

    @classmethod
    def zeros(cls, dim: int = DEFAULT_DIM, num_heads: int = NUM_HEADS) -> "TemporalAgent":
        """Every parameter zero: E = F, so logits = (cos + clip_scores) / tau ≈ 2·clip_scores / tau: CLIP ranking."""
        agent = cls(dim, num_heads)
        with torch.no_grad():
            for p in agent.parameters():
                p.zero_()
        return agent

    @classmethod
    def initialised(cls, dim: int = DEFAULT_DIM, std: float = 0.02, generator: torch.Generator | None = None,
                    num_heads: int = NUM_HEADS) -> "TemporalAgent":
        """The official training start (inferred from `MultiModal_Align`): weights ~ N(0, std), biases 0."""
        agent = cls(dim, num_heads)
        with torch.no_grad():
            for name, p in agent.named_parameters():
                if name.endswith("weight"):
                    p.normal_(0.0, std, generator=generator)
                else:
                    p.zero_()
        return agent

    @classmethod
    def from_state_dict(cls, state: Mapping[str, torch.Tensor], source: str = "state dict",
                        num_heads: int = NUM_HEADS) -> "TemporalAgent":
        """An agent holding exactly these tensors (no prefix); HarnessError naming `source` on any mismatch."""
        expected = agent_keys()
        missing = [key for key in expected if key not in state]
        unexpected = sorted(key for key in state if key not in expected)
        if missing or unexpected:
            parts = [f"missing keys {few(missing)}" if missing else "",
                     f"unexpected keys {few(unexpected)}" if unexpected else ""]
            raise HarnessError(f"{source} is not a TSPO selector state dict: {'; '.join(p for p in parts if p)}")
        dim = int(state["temporal.Self_q.weight"].shape[-1])
        try:
            agent = cls(dim, num_heads)
        except ValueError as e:
            raise HarnessError(f"{source}: {e}") from None
        wrong = [f"{key} {tuple(state[key].shape)} (expected {tuple(p.shape)})"
                 for key, p in agent.state_dict().items() if tuple(state[key].shape) != tuple(p.shape)]
        if wrong:
            raise HarnessError(f"{source}: selector tensors of inconsistent shapes: {few(wrong)}")
        agent.load_state_dict({key: state[key] for key in expected}, strict=True)
        return agent

    def forward(self, image_feats: torch.Tensor, text_feat: torch.Tensor, clip_scores: torch.Tensor,
                window_size: int = DEFAULT_WINDOW, tau: float = DEFAULT_TAU) -> torch.Tensor:
        """image_feats [T, D], text_feat [D] or [1, D], clip_scores [T] -> logits [T]."""
        weight = self.mlp[0].weight
        feats = torch.as_tensor(image_feats).to(weight.device, weight.dtype)
        text = torch.as_tensor(text_feat).to(weight.device, weight.dtype).reshape(-1)
        clip = torch.as_tensor(clip_scores).to(weight.device, weight.dtype).reshape(-1)
        if feats.ndim != 2 or feats.shape[1] != self.dim or text.shape[0] != self.dim:
            raise ValueError(f"agent of dim {self.dim} got image features {tuple(feats.shape)} and text feature "
                             f"{tuple(torch.as_tensor(text_feat).shape)}")
        if feats.shape[0] == 0:
            raise ValueError("the agent needs at least one candidate")
        if clip.shape[0] != feats.shape[0]:
            raise ValueError(f"{clip.shape[0]} clip scores for {feats.shape[0]} image features")
        timed = feats + positional_encoding(*feats.shape, dtype=feats.dtype, device=feats.device)
        context = self.temporal(timed, window_size)
        enriched = self.mlp(context) + feats  # residual on the features without PE, as the official code does
        norms = torch.sqrt((enriched ** 2).sum(-1)) * torch.sqrt((text ** 2).sum())
        cosine = (enriched @ text) / (norms + COSINE_EPS)
        return (cosine + clip) / tau


def agent_keys() -> list[str]:
    """The selector's state-dict keys, in the official order."""
    keys = []
    for module in ("temporal.Self_q", "temporal.Self_k", "temporal.Self_v", "temporal.ffn_o", "mlp.0", "mlp.2"):
        keys += [f"{module}.weight", f"{module}.bias"]
    return keys
