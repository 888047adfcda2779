"""GPU check of the rope=original timing in second_per_grid_ts: batch, accelerated (shared prefix) and one by one
agree on cuda, bf16 and fp32; the prefill probe runs."""
import numpy as np, torch
import backbones  # noqa
from harness.registry import BACKBONES
rng = np.random.default_rng(0)
a = rng.integers(0, 256, (8, 128, 128, 3), dtype=np.uint8)
b = rng.integers(0, 256, (6, 96, 128, 3), dtype=np.uint8)
ta, tb = [0, 1.5, 3, 7, 8, 20, 21, 40.3], [0, 1.1, 2, 3.7, 4, 5]
reqs = [(a, ta, "Which object comes first? A. red B. blue"), (b, tb, "Count?"), (a, ta, "Q"), (b, tb, "Which? A. x B. y")]
for dtype in ("float32", "bfloat16"):
    m = BACKBONES.create("qwen2.5-vl", random_init=True, config="qwen2.5-vl-tiny", max_new_tokens=6,
                         min_pixels=3136, max_pixels=12544, device="cuda", dtype=dtype)
    one = [m.generate(*r) for r in reqs]
    batch = m.generate_batch(reqs)
    undo = m.accelerate()
    fast = m.generate_batch(reqs)
    p = m.prefill_probe(reqs); p.run(); torch.cuda.synchronize()
    undo()
    print(dtype, "one==batch", one == batch, "one==fast", one == fast, p.tokens, p.vision_videos, p.extra, one)
mini = BACKBONES.create("mini-qwen2.5-vl", device="cuda", rope="original", max_new_tokens=6)
one = [mini.generate(*r) for r in reqs]
undo = mini.accelerate(); fast = mini.generate_batch(reqs); undo()
print("mini original one==fast", one == fast, one)
