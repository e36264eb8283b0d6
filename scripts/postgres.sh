#!/usr/bin/env bash
# Install and start a local PostgreSQL for the tests; print its URL on stdout.
set -euo pipefail
if ! command -v pg_lsclusters >/dev/null 2>&1 || [ -z "$(pg_lsclusters -h 2>/dev/null)" ]; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql) >&2
fi
read -r version cluster _ < <(pg_lsclusters -h | head -1)
pg_ctlcluster "$version" "$cluster" start >&2 2>/dev/null || true
for _ in $(seq 1 30); do
    if su postgres -c "psql -qtAc 'select 1'" >/dev/null 2>&1; then break; fi
    sleep 1
done
su postgres -c "psql -qc \"ALTER USER postgres PASSWORD 'postgres'\"" >&2
echo "postgresql+psycopg://postgres:postgres@localhost/postgres"
