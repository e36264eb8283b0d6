#!/usr/bin/env bash
# Regenerate the initial migration from the tables (only while no registry has shipped).
set -euo pipefail
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
rm -f registry/migrations/versions/0001_initial_schema.py
.venv/bin/python - "$tmp" <<'PY'
import sys
from alembic import command
from alembic.config import Config
config = Config()
config.set_main_option("script_location", "registry/migrations")
config.set_main_option("sqlalchemy.url", f"sqlite:///{sys.argv[1]}/gen.db")
command.revision(config, message="initial schema", autogenerate=True, rev_id="0001")
PY
sed -i '/# ### .* ###/d; /^Create Date:/d' registry/migrations/versions/0001_initial_schema.py
.venv/bin/ruff format -q registry/migrations
.venv/bin/ruff check --fix -q registry/migrations || true
rm -rf "$tmp"
