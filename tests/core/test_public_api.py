"""heylook_core's public surface: every name in __all__ exists, and the plugin-facing names are all there."""

from __future__ import annotations

import heylook_core


def test_all_names_exist() -> None:
    missing = [name for name in heylook_core.__all__ if not hasattr(heylook_core, name)]
    assert missing == []


def test_all_lists_every_public_class() -> None:
    public = {
        name
        for name, value in vars(heylook_core).items()
        if not name.startswith("_") and isinstance(value, type) and value.__module__.startswith("heylook_core")
    }
    assert public <= set(heylook_core.__all__)
