#!/usr/bin/env bash
# Preparation for the faster-whisper and coreml-stt tox envs: the Debian tools that make test speech at test time
# (espeak-ng speaks, sox pads, joins and converts). Idempotent: does nothing when both are installed.
set -euo pipefail

missing=()
command -v espeak-ng >/dev/null 2>&1 || missing+=(espeak-ng)
command -v sox >/dev/null 2>&1 || missing+=(sox)
if [ "${#missing[@]}" -eq 0 ]; then
    echo "stt-test-deps: espeak-ng and sox already installed"
    exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
fi
echo "stt-test-deps: installing ${missing[*]} with apt-get"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
echo "stt-test-deps: done ($(espeak-ng --version | head -n 1); $(sox --version))"
