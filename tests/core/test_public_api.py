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


def test_every_error_class_is_exported() -> None:
    """A plugin raises these (docs/plugins.md names PermissionDeniedError among others); each one is public."""
    import inspect

    from heylook_core import errors

    classes = {name for name, value in vars(errors).items() if inspect.isclass(value) and issubclass(value, Exception)}
    assert classes <= set(heylook_core.__all__)
    assert heylook_core.PermissionDeniedError is errors.PermissionDeniedError


def test_the_public_modules_import() -> None:
    import importlib

    assert heylook_core.PUBLIC_MODULES[0] == "heylook_core"
    for name in heylook_core.PUBLIC_MODULES:
        assert importlib.import_module(name).__name__ == name


def test_the_installed_distributions_are_typed() -> None:
    """heylook-core and the echo plugin ship py.typed (PEP 561), so a plugin author's type checker reads their hints."""
    import os
    from importlib import metadata

    import pytest

    if "TOX_ENV_NAME" not in os.environ:
        pytest.skip("checked in the tox envs, which install the distributions")
    for dist, package in (("heylook-core", "heylook_core"), ("heylook-echo", "heylook_echo")):
        files = {str(path) for path in metadata.files(dist) or []}
        assert f"{package}/py.typed" in files, dist
