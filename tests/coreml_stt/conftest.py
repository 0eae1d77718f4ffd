"""Tests marked ``macos`` predict with Core ML for real; elsewhere they are skipped with the reason shown (-ra)."""

from __future__ import annotations

import sys

import pytest

MACOS_REASON = "needs macOS: Core ML prediction (coremltools predict/compile) runs only on macOS"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if sys.platform == "darwin":
        return
    skip = pytest.mark.skip(reason=MACOS_REASON)
    for item in items:
        if "macos" in item.keywords:
            item.add_marker(skip)
