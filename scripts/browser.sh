#!/usr/bin/env bash
# Install Debian's Chromium and its WebDriver for the web console's browser tests, unless
# both are already there. Nothing is downloaded outside the Debian archive.
set -euo pipefail
if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then
    exit 0
fi
apt-get update -qq >&2
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >&2
