"""docs/plugins.md against the code: a plugin author who reads only that page gets every name and signature right."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

import heylook_core
from heylook_core import Capability, HeylookError, Provider, ThreadedProvider

ROOT = Path(__file__).resolve().parents[2]
DOCS = (ROOT / "docs" / "plugins.md").read_text(encoding="utf-8")


def _public_methods(cls: type) -> dict[str, inspect.Signature]:
    methods = {}
    for name, value in vars(cls).items():
        if name.startswith("_") or not callable(value):
            continue
        methods[name] = inspect.signature(value)
    return methods


def _call_form(name: str, signature: inspect.Signature) -> str:
    params = [p.name for p in signature.parameters.values() if p.name != "self"]
    return f"`{name}({', '.join(params)})`"


@pytest.mark.parametrize("cls", [Provider, ThreadedProvider], ids=lambda cls: cls.__name__)
def test_every_provider_method_is_documented_with_its_parameters(cls: type) -> None:
    methods = _public_methods(cls)
    assert "chat" in methods or "chat_sync" in methods
    missing = [form for name, sig in methods.items() if (form := _call_form(name, sig)) not in DOCS]
    assert missing == [], f"docs/plugins.md lacks these {cls.__name__} methods as written: {missing}"


def test_every_exported_name_is_on_the_page() -> None:
    names = [name for name in heylook_core.__all__ if not name.startswith("__")]
    spans = " ".join(re.findall(r"`([^`\n]+)`", DOCS))
    missing = [name for name in names if not re.search(rf"(?<![\w.]){re.escape(name)}\b", spans)]
    assert missing == [], f"heylook_core exports names docs/plugins.md never mentions: {missing}"


def test_every_capability_is_in_the_table() -> None:
    missing = [c.name for c in Capability if f"`Capability.{c.name}`" not in DOCS]
    assert missing == []


def test_the_error_table_gives_each_error_its_real_status() -> None:
    rows = re.findall(r"^\| `(\w+)(?:\([^`]*\))?` \| (\d{3}) \|", DOCS, re.MULTILINE)
    assert len(rows) >= 8, "the error table is missing"
    for name, status in rows:
        error = getattr(heylook_core, name)
        assert issubclass(error, HeylookError), name
        assert error.status_code == int(status), f"{name} is documented as {status}, answers {error.status_code}"
    exported = {name for name in heylook_core.__all__ if isinstance(getattr(heylook_core, name), type)}
    errors = {name for name in exported if issubclass(getattr(heylook_core, name), HeylookError)}
    assert errors - {name for name, _ in rows} <= {"HeylookError"}, "an exported error is missing from the table"
