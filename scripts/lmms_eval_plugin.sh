#!/usr/bin/env bash
# The harness as an lmms-eval model (docs/lmms-eval-plugin.md), checked end to end on CPU in the side environment
# .venv-parity (the one scripts/parity.sh uses: lmms-eval 0.7.3 pins av<16, so it never goes into .venv):
#   1. create or update .venv-parity with the harness's [lmms-eval] extra (lmms-eval==0.7.3) beside the pinned
#      torch pair and decord; the editable install registers `harness` in lmms-eval's `lmms_eval.models` group;
#   2. tests/integrations/test_lmms_eval_plugin.py: `harness run` on generated needle videos with the offline
#      default backbone and three samplers (uniform, aks, tspo), then `lmms_eval --model harness` on a local task
#      over the same questions (task YAML written by the test, passed with --include_path): frames, prompts and
#      answers identical per sample, lmms-eval's accuracy equal to the harness's;
#   3. tests/integrations/test_bench_reference_vs_lmms_eval.py: the `harness bench` reference loop's frame
#      indices and prompt against lmms-eval's own qwen2_5_vl model path (weights stubbed, nothing downloaded).
#
#   scripts/lmms_eval_plugin.sh              create or update .venv-parity, then run both checks
#   scripts/lmms_eval_plugin.sh -k uniform   extra pytest arguments
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=.venv-parity
source scripts/side_env.sh
side_env "$VENV" lmms-eval,dev
"$VENV/bin/python" -c "import lmms_eval, importlib.metadata as m; print('lmms-eval', m.version('lmms_eval'), \
'| av', m.version('av'), '| torch', m.version('torch'))"
"$VENV/bin/python" -c "from lmms_eval.models import get_model; print('lmms-eval model harness ->', get_model('harness'))"
PYTHONPATH="$PWD" HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 "$VENV/bin/python" -m pytest -q -s -p no:cacheprovider \
    tests/integrations "$@"
