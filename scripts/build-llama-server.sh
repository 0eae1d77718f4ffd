#!/usr/bin/env bash
# Build llama.cpp's llama-server for this host once into ${HEYLOOK_CACHE:-~/.cache/heylook}/llama-server/<version>/<key>
# (the key: version, flag set, $CMAKE_ARGS, compiler, target CPU), for the llama-server tox env and `make test`.
# Idempotent: a cached build is smoke-tested (it serves the default GGUF and answers a short completion) and reused;
# one killed by a signal is deleted and the portable flag set built instead. With llama-server on PATH or
# $HEYLOOK_LLAMA_SERVER set it only says so. This runs the same module as `heylookllm llama-server install`
# (heylook_llama_server.install, standard library only), so no environment has to exist first. Options: --force,
# --flags native-noamx|portable|native, --jobs N.
# The compile runs at low priority (nice 10); about 15 minutes on 2 cores the first time.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-}"
if [[ -z "$PYTHON" ]]; then
    if [[ -x .venv/bin/python ]]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
export PYTHONPATH="$PWD/heylook-llama-server${PYTHONPATH:+:$PYTHONPATH}"
exec nice -n 10 "$PYTHON" -m heylook_llama_server.install "$@"
