#!/usr/bin/env bash
# Train the mini Qwen2.5-VL (harness/miniworld/qwen/, `python -m harness.miniworld.qwen.main train`) on a GPU machine,
# several runs side by side:
#   scripts/train_mini_qwen.sh NAME 'TRAIN ARGS' [NAME 'TRAIN ARGS' ...]
# Run NAME trains into $RUNS_DIR/NAME (default /tmp/mini-qwen-runs) and logs to NAME.log there; where $OUT is set
# (the device tool's output folder) each run's folder and log come back packed as $OUT/NAME.tgz.
# PyAV (for the H.264 round trip of training frames) is installed from .qwenwhl/ when the machine lacks it.
# The shipped weights (harness/miniworld/weights/mini-qwen2.5-vl, ~34 min on one GPU; training.json there has the
# exact commands and held-out accuracies) came from five stages, each continuing the last through --init:
#   C='--device cuda --batch-size 64 --steps 30000 --sizes {"text_layers":4,"text_heads":4} --eval-videos 40'
#   scripts/train_mini_qwen.sh A "$C --workers 12 --videos 600 --max-seconds 450 --lr 2e-3"
#   scripts/train_mini_qwen.sh D "$C --workers 12 --videos 1200 --max-seconds 480 --lr 1e-3 \
#     --init /tmp/mini-qwen-runs/A"
#   scripts/train_mini_qwen.sh F "$C --workers 12 --videos 1200 --seed 1 --max-seconds 270 --lr 5e-4 \
#     --init /tmp/mini-qwen-runs/D"
# (stage 1 ran beside two other runs and stage 2 beside one, with 4 and 6 workers: alone, a run takes ~18 steps/s).
# Stages 4 and 5 add crowded selections (runs of evidence frames, other needles beside them) to the recipe:
#   I='--videos 1200 --max-seconds 370 --lr 5e-4 --recipe {"crowded":0.5} --evaluate-every 2000'
#   scripts/train_mini_qwen.sh P "$C --workers 7 --seed 2 $I --init harness/miniworld/weights/mini-qwen2.5-vl"
#   scripts/train_mini_qwen.sh R "$C --workers 12 --seed 3 --videos 1200 --max-seconds 470 --lr 4e-4 \
#     --recipe {\"crowded\":0.5} --init /tmp/mini-qwen-runs/P"
set -uo pipefail
if ! python3 -c "import av" 2>/dev/null && ls .qwenwhl/av-*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .qwenwhl/av-*.whl || exit 1
  export PYTHONPATH=/tmp/site:${PYTHONPATH:-}
fi
export PYTHONPATH=$PWD:${PYTHONPATH:-} TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1 OMP_NUM_THREADS=2
python3 -c "import torch, transformers, av, safetensors; print('torch', torch.__version__, 'transformers',
transformers.__version__, 'av', av.__version__, torch.cuda.get_device_name() if torch.cuda.is_available() else 'no cuda')" || exit 1
runs=${RUNS_DIR:-/tmp/mini-qwen-runs}
mkdir -p "$runs"
names=() pids=()
while [ $# -ge 2 ]; do
  # shellcheck disable=SC2086  # the run's arguments are meant to split
  python3 -m harness.miniworld.qwen.main train --out "$runs/$1" $2 >"$runs/$1.log" 2>&1 &
  names+=("$1") pids+=($!)
  shift 2
done
for i in "${!pids[@]}"; do
  wait "${pids[$i]}"; echo "${names[$i]}: exit $?"
  grep -v -i "warn\|writing model\|loading weights" "$runs/${names[$i]}.log" | grep "eval\|held out\|data:\|Error\|error" | tail -12
  if [ -n "${OUT:-}" ]; then tar -czf "$OUT/${names[$i]}.tgz" -C "$runs" "${names[$i]}" "${names[$i]}.log"; fi
done
