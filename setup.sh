#!/usr/bin/env bash
# One-line setup: a virtual environment in .venv with the harness and its test tools.
set -euo pipefail
cd "$(dirname "$0")"
python3 -m venv .venv
.venv/bin/pip install --quiet --upgrade pip
# constraints.txt pins torch 2.14.1 + torchvision 0.29.1 and decord 0.6.0 (see the README)
.venv/bin/pip install --quiet -c constraints.txt -e ".[dev]"
# Headless Chromium renders the HTML report in its test; installed where this user can (root with apt), else
# that one test says it was skipped and why.
if ! command -v chromium >/dev/null && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
        || echo "setup: chromium could not be installed (the HTML screenshot test will be skipped)"
fi
echo "setup done: .venv/bin/harness is ready"
