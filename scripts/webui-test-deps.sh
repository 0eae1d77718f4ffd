#!/usr/bin/env bash
# Preparation for the webui tox env: Debian's chromium, which the tests drive headless through Playwright (pointed at
# /usr/bin/chromium; Playwright's own browser downloads are never used). Idempotent: does nothing when it is there.
set -euo pipefail

CHROMIUM="${HEYLOOK_CHROMIUM:-/usr/bin/chromium}"
if [ -x "$CHROMIUM" ]; then
    echo "webui-test-deps: $CHROMIUM already installed"
    exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
fi
echo "webui-test-deps: installing chromium with apt-get"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends chromium
echo "webui-test-deps: done ($("$CHROMIUM" --version 2>/dev/null || echo chromium))"
