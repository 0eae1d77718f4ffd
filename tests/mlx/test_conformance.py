"""The conformance suite on MLX (mlx[cpu]): the tiny random llama built at test time, alone and with continuous
batching (concurrency 2), and MiniLM for embeddings.

The tiny model carries a chat template that renders tools (Qwen's shape, as in test_tools), as the models that MLX
serves do: MLX text models declare ``tools``, and one whose template renders none refuses them once loaded.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from heylook_core.conformance import Target
from heylook_core.conformance.suite import ConformanceSuite
from heylook_mlx.tiny import build_text_model
from tests.mlx.test_tools import TEMPLATE

CONFIG = """\
max_loaded_models = 3

[[models]]
id = "tiny"
provider = "mlx"
[models.config]
model_path = "{text_model}"

[[models]]
id = "tiny-batch"
provider = "mlx"
[models.config]
model_path = "{text_model}"
concurrency = 2

[[models]]
id = "minilm"
provider = "mlx"
[models.config]
model_path = "{minilm}"
embedding = true
"""


class TestConformance(ConformanceSuite):
    heylook_models = ("tiny", "tiny-batch", "minilm")

    @pytest.fixture(scope="class")
    @classmethod
    def heylook_target(cls, minilm: Path, tmp_path_factory: pytest.TempPathFactory) -> Target:
        folder = tmp_path_factory.mktemp("conformance")
        # a context long enough that an abandoned generation on this fast model would outlast the cancellation
        # check's margin (with 2048 it is skipped as too quick to tell a stopped engine from a running one)
        text_model = build_text_model(folder / "tiny", chat_template=TEMPLATE, context_length=8192)
        config = folder / "models.toml"
        config.write_text(CONFIG.format(text_model=text_model, minilm=minilm), encoding="utf-8")
        return Target(config=config, env={"HEYLOOK_LOAD_PLUGINS": "mlx"}, cwd=folder)
