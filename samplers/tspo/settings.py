"""TSPO's constants and the official evaluation settings (Hui-design/TSPO)."""
DEFAULT_DIM = 768  # CLIP ViT-L/14 projection dim; the official checkpoint's
NUM_HEADS = 8
DEFAULT_WINDOW = 12
DEFAULT_TAU = 0.025
DEFAULT_ENCODER = "openai/clip-vit-large-patch14"
METHODS = ("topk", "bin-max", "aks")
# The official AKS rule on TSPO scores has these hard-coded (its comments quote 0.8/5 for Video-MME).
AKS_T1, AKS_DEPTH = 0.2, 3
MASKED_SCORE = -1e6  # what the official code writes into masked attention scores (not -inf)
COSINE_EPS = 1e-6  # added to the norm product, as the official `pair_cosine` does
# Where the selector's keys live: `selector.` in the TSPO-0.4B CLIP folder, `multiModal_align.` in the LLaVA
# training model (TSPO's `scripts/merge_weights.py`).
CHECKPOINT_PREFIXES = ("selector.", "multiModal_align.")
# The official evaluation settings per benchmark (TSPO `mp_tools/vlmeval/vlm/gen_id_tspo.py` and `evaluation/*.sh`); every one uses K = 64 frames (--frames 64).
PRESETS = {
    "longvideobench": {"method": "topk", "window": 12, "tau": DEFAULT_TAU, "frames": 64},
    "mlvu": {"method": "topk", "window": 12, "tau": DEFAULT_TAU, "frames": 64},
    "lvbench": {"method": "topk", "window": 12, "tau": DEFAULT_TAU, "frames": 64},
    "videomme": {"method": "bin-max", "window": 12, "tau": DEFAULT_TAU, "frames": 64},
}
COMPUTE_DTYPES = ("float32", "float64", "bfloat16")
