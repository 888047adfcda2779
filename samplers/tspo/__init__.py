"""TSPO: the temporal agent of the official TSPO code (Hui-design/TSPO `model/temporal_agent.py`, `MultiModal_Align`; arXiv 2508.04369) and its frame sampler.

The agent turns per-candidate CLIP features into one logit per candidate:

    X   = F + PE                                  (sinusoidal PE over positions t / T)
    Ctx = windowed multi-head self-attention(X)   (row j sees columns j - w//2 .. j + w - w//2 - 1; no out-proj)
    E   = MLP(Ctx) + F                            (the residual adds F, not X)
    logit_t = (<E_t, q> / (|E_t| |q| + 1e-6) + clip_score_t) / tau

and a selection rule (`topk`, `bin-max`, `aks`) turns logits into candidate positions (`inference_ts`).

Inputs the runner supplies to the sampler (`needs`), for the n grid candidates under the sampler's `encoder`:

    image_features  (n, D) float32: CLIP `get_image_features` output, NOT L2-normalised. The official agent adds
                    the sinusoidal PE to, and takes its residual from, the raw features, so a trained agent's
                    logits depend on their scale (a zero agent's do not).
    text_feature    (D,) float32: CLIP `get_text_features` of the query (scale is irrelevant: only its direction
                    enters the cosine).
    scores          (n,) float: cosine of each image feature with the text feature (the official clip_scores).

Modules: `settings` (constants and the official presets), `rules` (selection rules over logits, numpy), `agent`
(the selector network, torch), `weights` (reading checkpoints), `sampler` (the registered sampler; torch is imported
only when an agent is built, so listing samplers stays light).
"""
from samplers.tspo.sampler import TSPO  # noqa: F401  (registration side effect)
