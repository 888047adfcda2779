#!/usr/bin/env bash
# Cross-check of harness/report/stats.py against SciPy (dev only, never in CI): a side virtual environment
# .venv-stats with numpy (the main environment's version), scipy, pytest and the harness (installed without its
# heavy dependencies: the statistics need only numpy), then tests/report/test_stats_scipy.py, which compares the
# question bootstrap, the cluster bootstrap and McNemar's test with scipy.stats.bootstrap, scipy.stats.binomtest
# and scipy.stats.chi2. SciPy is not a dependency of the harness; in the main environment that test skips.
#
#   scripts/check_stats_scipy.sh            create or update .venv-stats, then run the cross-check
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=.venv-stats
if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --upgrade pip
fi
MAIN_PYTHON=${MAIN_PYTHON:-.venv/bin/python}  # the main environment, whose numpy version is pinned here
NUMPY=$( ("$MAIN_PYTHON" -c "import numpy; print(numpy.__version__)" 2>/dev/null) || echo "")
"$VENV/bin/pip" install --quiet "numpy${NUMPY:+==$NUMPY}" scipy==1.17.1 "pytest>=8"
"$VENV/bin/pip" install --quiet --no-deps -e .
"$VENV/bin/python" -c "import numpy, scipy; print('numpy', numpy.__version__, '| scipy', scipy.__version__)"
"$VENV/bin/python" -m pytest -q -p no:cacheprovider tests/report/test_stats_scipy.py "$@"
