"""The plugin contract's types as a third party's type checker sees them: the provider of docs/plugins.md, written
out from the page alone, passes ``mypy --strict`` against the installed heylook-core; and mypy catches a provider
that reads a config key its schema lacks, or a spec whose provider or config functions take another config than its
schema."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from mypy import api

ROOT = Path(__file__).resolve().parents[2]
DOCS = (ROOT / "docs" / "plugins.md").read_text(encoding="utf-8")
FILE = re.compile(r"<!-- example: (\S+) -->\n```\w*\n(.*?)```", re.DOTALL)
# a second config class next to the example's, for the mismatches below
SLOTS = "\n\nclass SlotsConfig(ProviderConfig):\n    slots: int = Field(default=1, ge=1)\n"
IMPORT = "from heylook_reverse.config import ReverseConfig\n"


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("mypy-cache")  # shared: heylook_core and its libraries are read once


def mypy_on_example(folder: Path, cache: Path, edits: list[tuple[str, str, str]] = ()) -> tuple[int, str]:
    """mypy --strict over the page's example package, each ``(file, old, new)`` edit made first ("" appends)."""
    files = dict(FILE.findall(DOCS))
    for name, old, new in edits:
        assert old in files[name], f"{old!r} is no longer in the page's {name}"
        files[name] = files[name] + new if old == "" else files[name].replace(old, new)
    for name, text in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    arguments = ["--strict", "--python-version", "3.10", "--cache-dir", str(cache), "--config-file", ""]
    stdout, stderr, status = api.run([*arguments, str(folder / "heylook_reverse")])
    return status, stdout + stderr


def test_the_docs_provider_passes_mypy_strict(tmp_path: Path, cache: Path) -> None:
    status, output = mypy_on_example(tmp_path, cache)
    assert status == 0, output
    assert "Success: no issues found in 4 source files" in output


def test_self_config_is_the_schema_so_a_mistyped_key_is_an_error(tmp_path: Path, cache: Path) -> None:
    edits = [("heylook_reverse/provider.py", "self.config.word_delay_ms", "self.config.word_delay")]
    status, output = mypy_on_example(tmp_path, cache, edits)
    assert status == 1
    assert "provider.py:" in output and '"ReverseConfig" has no attribute "word_delay"' in output, output


def test_a_spec_whose_provider_takes_another_config_than_its_schema_is_an_error(tmp_path: Path, cache: Path) -> None:
    edits = [
        ("heylook_reverse/config.py", "", SLOTS),
        ("heylook_reverse/plugin.py", IMPORT, "from heylook_reverse.config import ReverseConfig, SlotsConfig\n"),
        ("heylook_reverse/plugin.py", "config_schema=ReverseConfig,", "config_schema=SlotsConfig,"),
    ]
    status, output = mypy_on_example(tmp_path, cache, edits)
    assert status == 1
    assert "plugin.py:" in output and '"ProviderSpec"' in output and "provider.py:" not in output, output


def test_a_spec_whose_config_function_takes_another_config_is_an_error(tmp_path: Path, cache: Path) -> None:
    edits = [
        ("heylook_reverse/config.py", "", SLOTS),
        ("heylook_reverse/plugin.py", IMPORT, "from heylook_reverse.config import ReverseConfig, SlotsConfig\n"),
        (
            "heylook_reverse/plugin.py",
            "config_schema=ReverseConfig,",
            "config_schema=ReverseConfig, max_concurrency=_slots,",
        ),
        (
            "heylook_reverse/plugin.py",
            "def _factory(",
            "def _slots(config: SlotsConfig) -> int:\n    return config.slots\n\n\ndef _factory(",
        ),
    ]
    status, output = mypy_on_example(tmp_path, cache, edits)
    assert status == 1
    assert "plugin.py:" in output and '"ProviderSpec"' in output and "provider.py:" not in output, output
