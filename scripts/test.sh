#!/usr/bin/env bash
# Install mbom with its test dependencies, start PostgreSQL, run lint, types and
# the whole test suite on SQLite and PostgreSQL.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh dev
export MBOM_TEST_POSTGRES_URL="${MBOM_TEST_POSTGRES_URL:-$(bash scripts/postgres.sh)}"
export MBOM_REQUIRE_POSTGRES=1
.venv/bin/ruff check .
.venv/bin/mypy
.venv/bin/pytest "$@"
