#!/usr/bin/env bash
# Build the llama-cpp-python wheel that heylook-llamacpp pins, once, into
# ${HEYLOOK_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/heylook}/wheels. tox (and `make`) point PIP_FIND_LINKS there, so
# `pip install llama-cpp-python==VERSION` takes the cached wheel instead of compiling again.
#
# Idempotent: with a matching wheel in the cache it only says so. The compile (about 6 minutes on 2 cores) runs at
# low priority and prints cmake/ninja progress lines, with a heartbeat every 20 s; the full log goes to
# <cache>/logs/llama-cpp-build.log.
#
# CMAKE_ARGS selects the accelerator, exactly as for llama-cpp-python itself:
#   CMAKE_ARGS="-DGGML_METAL=on"  scripts/build-llama-cpp-wheel.sh   # Apple Silicon (Metal)
#   CMAKE_ARGS="-DGGML_CUDA=on"   scripts/build-llama-cpp-wheel.sh   # NVIDIA (CUDA toolkit needed)
#   CMAKE_ARGS="-DGGML_VULKAN=on" scripts/build-llama-cpp-wheel.sh   # Vulkan (SDK / libvulkan-dev needed)
# A wheel built with other CMAKE_ARGS has the same file name: delete it from the cache to rebuild.
set -euo pipefail

VERSION="${LLAMA_CPP_PYTHON_VERSION:-0.3.36}"
CACHE="${HEYLOOK_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/heylook}"
WHEELS="$CACHE/wheels"
LOGS="$CACHE/logs"
LOG="$LOGS/llama-cpp-build.log"
PYTHON="${PYTHON:-}"
if [[ -z "$PYTHON" ]]; then
    cd "$(dirname "$0")/.."
    if [[ -x .venv/bin/python ]]; then PYTHON="$PWD/.venv/bin/python"; else PYTHON=python3; fi
fi

shopt -s nullglob
existing=("$WHEELS"/llama_cpp_python-"$VERSION"-*.whl)
if (( ${#existing[@]} )); then
    echo "llama-cpp-python $VERSION: cached wheel ${existing[0]}"
    exit 0
fi

mkdir -p "$WHEELS" "$LOGS"
echo "llama-cpp-python $VERSION: building a wheel (CMAKE_ARGS='${CMAKE_ARGS:-}'); this takes several minutes."
echo "full log: $LOG"
start=$SECONDS
(
    while sleep 20; do
        echo "  ... still building ($((SECONDS - start)) s)"
    done
) &
heartbeat=$!
trap 'kill "$heartbeat" 2>/dev/null || true' EXIT

CMAKE_ARGS="${CMAKE_ARGS:-}" nice -n 10 "$PYTHON" -m pip wheel --no-deps -v -w "$WHEELS" "llama-cpp-python==$VERSION" \
    2>&1 | tee "$LOG" | grep --line-buffered -E '^\s*\[[0-9]+/[0-9]+\]|^-- (Build|Configuring|Generating)|Created wheel|ERROR|error:' \
    | sed -u -E 's#^\s*(\[[0-9]+/[0-9]+\]).* -c .*/([^/ ]+)$#  \1 compiling \2#; s#^(.{0,160}).*#\1#' \
    || true  # success is judged by the wheel below

existing=("$WHEELS"/llama_cpp_python-"$VERSION"-*.whl)
if (( ${#existing[@]} )); then
    echo "llama-cpp-python $VERSION: built ${existing[0]} in $((SECONDS - start)) s"
    exit 0
fi
echo "llama-cpp-python $VERSION: the build failed; the last lines of $LOG:" >&2
tail -n 30 "$LOG" >&2
exit 1
