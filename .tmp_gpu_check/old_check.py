import os, sys, numpy as np, torch
OLD = sys.argv[1] == "old"
import backbones  # noqa
from harness.registry import BACKBONES
rng = np.random.default_rng(0)
a = rng.integers(0, 256, (8, 128, 128, 3), dtype=np.uint8)
b = rng.integers(0, 256, (6, 96, 128, 3), dtype=np.uint8)
ta, tb = [0, 1.5, 3, 7, 8, 20, 21, 40.3], [0, 1.1, 2, 3.7, 4, 5]
reqs = [(a, ta, "Which object comes first? A. red B. blue"), (b, tb, "Count?"), (a, ta, "Q"), (b, tb, "Which? A. x B. y")]
def acc(m):
    if OLD:
        from backbones.qwen2_5_vl_fast import accelerate
        return accelerate(m)
    return m.accelerate()
for dtype in ("float32", "bfloat16"):
    m = BACKBONES.create("qwen2.5-vl", random_init=True, config="qwen2.5-vl-tiny", max_new_tokens=6,
                         min_pixels=3136, max_pixels=12544, device="cuda", dtype=dtype)
    one = [m.generate(*r) for r in reqs]
    batch = m.generate_batch(reqs)
    undo = acc(m); fast = m.generate_batch(reqs); undo()
    print(sys.argv[1], dtype, "one==batch", one == batch, "one==fast", one == fast)
folder = os.path.abspath("harness/miniworld/weights/mini-qwen2.5-vl") if OLD else "mini-qwen2.5-vl"
for dtype in ("float32", "bfloat16"):
    mini = BACKBONES.create("qwen2.5-vl", model=os.environ.get("MINI", folder), pixels="model", device="cuda", rope="original", max_new_tokens=6, dtype=dtype)
    one = [mini.generate(*r) for r in reqs]; batch = mini.generate_batch(reqs)
    undo = acc(mini); fast = mini.generate_batch(reqs); undo()
    print(sys.argv[1], "mini", dtype, one, batch, fast)
