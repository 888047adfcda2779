#!/usr/bin/env bash
# One-line setup: a virtual environment in .venv with the harness and its test tools.
set -euo pipefail
cd "$(dirname "$0")"
python3 -m venv .venv
.venv/bin/pip install --quiet --upgrade pip
# constraints.txt pins torch 2.14.1 + torchvision 0.29.1 and decord 0.6.0 (see the README)
.venv/bin/pip install --quiet -c constraints.txt -e ".[dev]"
echo "setup done: .venv/bin/harness is ready"
