#!/usr/bin/env bash
# Build llama.cpp's llama-server once into ${HEYLOOK_CACHE:-~/.cache/heylook}/llama-server/<version>/bin, for the
# llama-server tox env and `make test`. Idempotent: with the binary (or llama-server on PATH, or
# $HEYLOOK_LLAMA_SERVER) present it only says so. This runs the same module as `heylookllm llama-server install`
# (heylook_llama_server.install, standard library only), so no environment has to exist first.
# The compile runs at low priority (nice 10); about 7-10 minutes on 2 cores the first time.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-}"
if [[ -z "$PYTHON" ]]; then
    if [[ -x .venv/bin/python ]]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
export PYTHONPATH="$PWD/heylook-llama-server${PYTHONPATH:+:$PYTHONPATH}"
exec nice -n 10 "$PYTHON" -m heylook_llama_server.install "$@"
