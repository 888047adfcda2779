#!/usr/bin/env bash
# The exports read by the toolkits' own code (docs/export.md): tests/export/test_toolkit_readers.py in the side
# environment of lmms-eval 0.7.3 (scripts/parity.sh's .venv-parity; if it does not exist, .venv-export is created the
# same way, with the [parity] extra), with VLMEvalKit's source exported from its fetched bare mirror (default
# /work/.mirror/open-compass+VLMEvalKit/repo, or $VLMEVALKIT_GIT) to a temporary folder. Never in CI.
#
#   scripts/export_roundtrip.sh [pytest options]      VENV=DIR to use another environment
#
# HARNESS_SHARED_DATA (default ../shared/data/tspo-release) adds the check on 40 real records per benchmark.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv-parity}
if [ ! -x "$VENV/bin/python" ]; then
    VENV=.venv-export
    source scripts/side_env.sh
    [ -x "$VENV/bin/python" ] || side_env "$VENV" parity,dev
fi
# lmms-eval's logs viewer (lmms_eval.tui.server) needs fastapi, which [parity] does not install: a pinned pair, no
# dependencies (the rest is in the environment), in its own folder
SITE=.venv-export-site
[ -d "$SITE/fastapi" ] || "$VENV/bin/pip" install --quiet --no-deps --target "$SITE" fastapi==0.115.12 starlette==0.46.2
"$VENV/bin/python" -c "import lmms_eval, openpyxl, importlib.metadata as m; print('lmms-eval', m.version('lmms_eval'), \
'| openpyxl', m.version('openpyxl'), '| pandas', m.version('pandas'))"
GIT=${VLMEVALKIT_GIT:-/work/.mirror/open-compass+VLMEvalKit/repo}
SRC=$(mktemp -d)
trap 'rm -rf "$SRC"' EXIT
git --git-dir="$GIT" archive HEAD vlmeval | tar -x -C "$SRC"
echo "VLMEvalKit $(git --git-dir="$GIT" rev-parse HEAD)"
DATA=${HARNESS_SHARED_DATA:-$(cd .. && pwd)/shared/data/tspo-release}
[ -d "$DATA/jsons" ] && export HARNESS_SHARED_DATA="$DATA"
VLMEVALKIT_SRC="$SRC" PYTHONPATH="$PWD:$PWD/$SITE" HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 \
    "$VENV/bin/python" -m pytest -q -p no:cacheprovider tests/export/test_toolkit_readers.py \
    tests/export/test_toolkit_real_records.py "$@"
