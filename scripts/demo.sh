#!/usr/bin/env bash
# Install mbom and play the demo cascade on a fresh embedded SQLite registry.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh demo
exec .venv/bin/mbom demo "$@"
