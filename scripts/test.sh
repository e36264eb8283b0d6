#!/usr/bin/env bash
# Install mbom with its test dependencies, start PostgreSQL and an S3 server, install Chromium
# for the web console's browser tests, run lint, types and the whole test suite on SQLite and
# PostgreSQL, local and S3 artifact stores.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh dev
export MBOM_TEST_POSTGRES_URL="${MBOM_TEST_POSTGRES_URL:-$(bash scripts/postgres.sh)}"
export MBOM_REQUIRE_POSTGRES=1
if [ -z "${MBOM_TEST_S3_URL:-}" ]; then
    s3_env="$(bash scripts/s3.sh)" # fails the run when the server does not come up
    eval "$s3_env"
fi
export MBOM_REQUIRE_S3=1
bash scripts/browser.sh # headless Chromium and chromium-driver for the web console's tests
export MBOM_REQUIRE_BROWSER=1
.venv/bin/ruff check .
.venv/bin/mypy
.venv/bin/lint-imports
.venv/bin/pytest "$@"
