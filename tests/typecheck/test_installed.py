"""The typecheck env checks the distributions as installed from their wheels (the engines left out), never the tree."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from heylook_core.testing import installed_problems

ROOT = Path(__file__).resolve().parents[2]
DISTRIBUTIONS = (
    "heylook-core",
    "heylook-echo",
    "heylook-analytics",
    "heylook-webui",
    "heylook-llamacpp",
    "heylook-llama-server",
    "heylook-mlx",
    "heylook-faster-whisper",
    "heylook-coreml-stt",
)


@pytest.mark.skipif("TOX_ENV_NAME" not in os.environ, reason="checked in the tox envs, which install the wheels")
def test_the_installed_distributions_are_under_test() -> None:
    assert installed_problems(*DISTRIBUTIONS, cwd=ROOT) == []
