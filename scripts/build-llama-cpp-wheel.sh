#!/usr/bin/env bash
# Build the llama-cpp-python wheel that heylook-llamacpp pins, for this host, into heylook's cache
# (${HEYLOOK_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/heylook}); tox and `make` point PIP_FIND_LINKS at <cache>/wheels,
# which holds only the chosen build. Runs heylook_llamacpp.build (standard library only), which:
#   - keys each build by everything that changes the binary (version, CMAKE_ARGS, flag set, compiler and its target,
#     the CPU -march=native means), one cache entry per key, built with pip's cache off;
#   - smoke-tests a build (load the default GGUF, generate a few tokens, in a subprocess) after building it and
#     before trusting a cached one; a build killed by a signal (SIGILL on a CPU that advertises AMX it cannot run)
#     is removed and the portable flag set is built instead.
# The compile (about 5 minutes on 2 cores) runs at nice 10; its full log is in the entry's build.log.
#
# CMAKE_ARGS selects the accelerator, exactly as for llama-cpp-python itself, and is part of the cache key:
#   CMAKE_ARGS="-DGGML_METAL=on"  scripts/build-llama-cpp-wheel.sh   # Apple Silicon (Metal)
#   CMAKE_ARGS="-DGGML_CUDA=on"   scripts/build-llama-cpp-wheel.sh   # NVIDIA (CUDA toolkit needed)
#   CMAKE_ARGS="-DGGML_VULKAN=on" scripts/build-llama-cpp-wheel.sh   # Vulkan (SDK / libvulkan-dev needed)
# Options: --install (into $PYTHON's environment), --force (rebuild), --flags native-noamx|portable|native.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-}"
if [[ -z "$PYTHON" ]]; then
    if [[ -x .venv/bin/python ]]; then PYTHON="$PWD/.venv/bin/python"; else PYTHON=python3; fi
fi
export PYTHONPATH="$PWD/heylook-llamacpp${PYTHONPATH:+:$PYTHONPATH}"
exec "$PYTHON" -m heylook_llamacpp.build --python "$PYTHON" "$@"
