#!/usr/bin/env bash
# Start a local S3 server (SeaweedFS, from .venv/bin/weed) for the tests unless one
# already answers, create the test bucket, and print the environment to use as
# `export` lines on stdout:  eval "$(bash scripts/s3.sh)"
# Requests are authenticated with a test key written to .s3-data/s3.json.
# `bash scripts/s3.sh stop` stops the server this script started.
set -euo pipefail
cd "$(dirname "$0")/.."
data="$PWD/.s3-data"
port="${MBOM_S3_PORT:-18333}"
bucket=mbom-test
key=mbom-test-key
secret=mbom-test-secret
endpoint="http://127.0.0.1:${port}"
# weed and boto3 come from the project's venv (scripts/install.sh dev), or the active one.
bin="${VIRTUAL_ENV:-$PWD/.venv}/bin"

if [ "${1:-}" = stop ]; then
    # weed takes long to stop on TERM (its parts retry each other): KILL after 5 s.
    if [ -f "$data/weed.pid" ]; then
        pid="$(cat "$data/weed.pid")"
        kill "$pid" 2>/dev/null || true
        for _ in 1 2 3 4 5; do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
        kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$data/weed.pid"
    exit 0
fi

answers() { (exec 3<>"/dev/tcp/127.0.0.1/${port}") 2>/dev/null; }

if ! answers; then
    if [ ! -x "$bin/weed" ]; then
        echo "s3.sh: no $bin/weed; run: bash scripts/install.sh dev" >&2
        exit 1
    fi
    # A fresh store each start: on old data weed takes ~20 s to come back, fresh ~3 s.
    rm -rf "$data/store"
    mkdir -p "$data/store"
    cat >"$data/s3.json" <<JSON
{"identities": [{"name": "mbom-test",
  "credentials": [{"accessKey": "${key}", "secretKey": "${secret}"}],
  "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}
JSON
    # Ports next to the S3 one (gRPC ports are these + 10000); Iceberg and Lance off.
    setsid "$bin/weed" server -ip=127.0.0.1 -ip.bind=127.0.0.1 -dir="$data/store" \
        -master.port=$((port + 1000)) -volume.port=$((port + 1001)) \
        -master.volumeSizeLimitMB=128 -volume.max=32 \
        -filer -filer.port=$((port + 1002)) \
        -s3 -s3.port="$port" -s3.config="$data/s3.json" \
        -s3.port.iceberg=0 -s3.port.lance=0 \
        </dev/null >"$data/weed.log" 2>&1 &
    echo $! >"$data/weed.pid"
    echo "s3.sh: started SeaweedFS (pid $!, log $data/weed.log) at $endpoint" >&2
fi

# Wait until it authenticates us and the bucket exists (the filer starts last).
AWS_ENDPOINT_URL="$endpoint" AWS_ACCESS_KEY_ID="$key" AWS_SECRET_ACCESS_KEY="$secret" \
    AWS_DEFAULT_REGION=us-east-1 "$bin/python" - "$bucket" <<'PY' >&2
import sys
import time

import boto3
from botocore.exceptions import BotoCoreError, ClientError

client = boto3.client("s3")
deadline = time.monotonic() + 30
while True:
    try:
        client.create_bucket(Bucket=sys.argv[1])
        break
    except ClientError as exc:
        if exc.response["Error"]["Code"] in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
            break
        error = exc
    except BotoCoreError as exc:
        error = exc
    if time.monotonic() > deadline:
        sys.exit(f"s3.sh: the S3 server did not accept the test bucket: {error}")
    time.sleep(0.2)
PY

cat <<ENV
export MBOM_TEST_S3_URL=s3://${bucket}/ci
export AWS_ENDPOINT_URL=${endpoint}
export AWS_ACCESS_KEY_ID=${key}
export AWS_SECRET_ACCESS_KEY=${secret}
export AWS_DEFAULT_REGION=us-east-1
ENV
