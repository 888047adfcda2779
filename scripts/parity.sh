#!/usr/bin/env bash
# Parity with lmms-eval 0.7.3 itself (docs/parity.md): a separate virtual environment .venv-parity with the
# harness's [parity] extra (lmms-eval==0.7.3, filelock<4) next to the pinned torch pair and decord, then the parity
# test, which calls lmms-eval's own task functions on every record of the real annotation files.
#
#   scripts/parity.sh              create or update .venv-parity, then run the parity test
#   PARITY_REPORT=out.json scripts/parity.sh     also write the counts as JSON
#
# lmms-eval needs av<16 (PyAV 15.x) and pulls about 1.1 GB of extra packages, so it never goes into .venv.
# The annotation files are read from ../shared/data/tspo-release (the test skips without them).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=.venv-parity
source scripts/side_env.sh
side_env "$VENV" parity,dev
"$VENV/bin/python" -c "import lmms_eval, importlib.metadata as m; print('lmms-eval', m.version('lmms_eval'), \
'| av', m.version('av'), '| filelock', m.version('filelock'))"
HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 "$VENV/bin/python" -m pytest -q -s -p no:cacheprovider tests/parity "$@"
