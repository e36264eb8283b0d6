#!/usr/bin/env bash
# Create .venv and install mbom with the extras named in $1 (default: demo).
# constraints.txt pins the CPU build of PyTorch that is available offline here.
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-demo}"
if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -c constraints.txt -e ".[${extras}]"
