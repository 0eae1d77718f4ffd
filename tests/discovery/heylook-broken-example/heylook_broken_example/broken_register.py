"""Imports fine, then fails while registering its provider."""

from typing import Any

from heylook_core import hookimpl


@hookimpl
def register_providers(register: Any) -> None:
    raise RuntimeError("broken_register: the engine refused to initialise")
