"""The coreml-stt env tests the distributions as installed from their wheels, never the source tree."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from heylook_core.testing import installed_problems

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.skipif("TOX_ENV_NAME" not in os.environ, reason="checked in the tox envs, which install the wheels")
def test_the_installed_distributions_are_under_test() -> None:
    assert installed_problems("heylook-core", "heylook-coreml-stt", cwd=ROOT) == []
