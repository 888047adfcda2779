#!/usr/bin/env bash
# Parity with VLMEvalKit's own functions (docs/vlmevalkit.md). VLMEvalKit is not on PyPI: its source comes from a
# fetched bare mirror (default /work/.mirror/open-compass+VLMEvalKit/repo, or $VLMEVALKIT_GIT), exported to a
# temporary folder; pysubs2, portalocker and openpyxl (what its dataset modules import that .venv lacks) go to
# .venv-vlmeval/site; the rest of its package imports are stubbed (scripts/vlmevalkit_stubs.py).
#
#   scripts/parity_vlmevalkit.sh [--json OUT]
set -euo pipefail
cd "$(dirname "$0")/.."
GIT=${VLMEVALKIT_GIT:-/work/.mirror/open-compass+VLMEvalKit/repo}
PY=${PYTHON:-.venv/bin/python}
[ -d .venv-vlmeval/site/pysubs2 ] || "$PY" -m pip install --quiet --target .venv-vlmeval/site pysubs2==1.8.1 portalocker openpyxl
SRC=$(mktemp -d)
trap 'rm -rf "$SRC"' EXIT
git --git-dir="$GIT" archive HEAD vlmeval | tar -x -C "$SRC"
echo "VLMEvalKit $(git --git-dir="$GIT" rev-parse HEAD)"
PYTHONPATH="$PWD:$PWD/.venv-vlmeval/site" "$PY" scripts/parity_vlmevalkit.py "$SRC" "$@"
