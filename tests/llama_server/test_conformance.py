"""The conformance suite on a supervised llama-server with the real gemma GGUF: a chat model with two parallel
slots (so concurrent requests run at once) and an embedding model."""

from __future__ import annotations

from pathlib import Path

import pytest

from heylook_core.conformance import Target
from heylook_core.conformance.suite import ConformanceSuite

pytestmark = pytest.mark.slow

CONFIG = """\
max_loaded_models = 2

[[models]]
id = "gemma"
provider = "llama_server"
[models.config]
model_path = "{gemma}"
chat_template = "gemma"
n_ctx = 1024
parallel = 2
n_threads = 1

[[models]]
id = "gemma-embed"
provider = "llama_server"
[models.config]
model_path = "{gemma}"
embedding = true
n_ctx = 512
n_threads = 1
"""

# Values for llama-server's own parameters (each must be accepted).
OWN_PARAMETERS = {
    "grammar": "root ::= [0-9, ]+",
    "json_schema": {"type": "object"},
    "cache_prompt": True,
    "ignore_eos": False,
    "n_probs": 0,
    "typical_p": 1.0,
}


class TestConformance(ConformanceSuite):
    heylook_models = ("gemma", "gemma-embed")

    @pytest.fixture(scope="class")
    @classmethod
    def heylook_target(cls, gemma: Path, tmp_path_factory: pytest.TempPathFactory) -> Target:
        folder = tmp_path_factory.mktemp("conformance")
        config = folder / "models.toml"
        config.write_text(CONFIG.format(gemma=gemma), encoding="utf-8")
        return Target(
            config=config,
            env={"HEYLOOK_LOAD_PLUGINS": "llama_server", "XDG_CONFIG_HOME": str(folder / "xdg")},
            cwd=folder,
            params=OWN_PARAMETERS,
            startup_timeout=180,
        )
