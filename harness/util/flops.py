"""Transformer arithmetic shared by backbones' FLOP counts (`Backbone.prefill_probe`) and `harness bench`."""
from __future__ import annotations


def language_flops(text, tokens: list[int], cached: list[int] | None = None) -> int:
    """Multiply-adds x 2 of a decoder-only language model's prefill, per sequence of n real tokens, from its config
    `text` (hidden size d, L layers, key/value width kv = kv heads x head dim, MLP width f, vocabulary V):

        2 n L (2 d^2 + 2 d kv + 3 d f)   projections and MLP
      + 2 n^2 L d                        causal attention (QK^T and PV, half the square)
      + 2 d V                            the last token's logits (generate keeps only those)

    Where a sequence continues c cached tokens (a shared prefix), its attention also reads them: + 4 n c L d."""
    d, layers, f = text.hidden_size, text.num_hidden_layers, text.intermediate_size
    kv = text.num_key_value_heads * (d // text.num_attention_heads)
    per_token = 2 * layers * (2 * d * d + 2 * d * kv + 3 * d * f)
    cached = cached or [0] * len(tokens)
    return sum(per_token * n + 2 * n * (n + 2 * c) * layers * d + 2 * d * text.vocab_size
               for n, c in zip(tokens, cached))
