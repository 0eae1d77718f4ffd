"""The first-party packages' import structure, read from their source with ``ast`` (their modules are not imported).

Every first-party plugin imports heylook only through its public surface: ``heylook_core`` (names in its
``__all__``) and the modules of ``heylook_core.PUBLIC_MODULES``, as a third party's plugin would.

A plugin's entry point module (``plugin.py``) is a leaf: its engine and the rest of the package import the config
schema from ``config.py``, never the entry point (which imports the engine lazily, in its factory). In the core,
only the CLI imports the FastAPI application module (``app.py``); the routes reach the ``Server`` through
``heylook_core.server``.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

import heylook_core

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = sorted(
    path
    for pattern in ("heylook-*/heylook_*", "plugins/*/heylook_*")
    for path in ROOT.glob(pattern)
    if (path / "__init__.py").is_file()
)


def module_name(path: Path, package: Path) -> str:
    parts = path.relative_to(package.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path, package: Path) -> Iterator[str]:
    """Every module ``path`` imports, at module level or inside functions, relative imports resolved."""
    here = module_name(path, package).split(".")
    if path.name != "__init__.py":
        here = here[:-1]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join([*here[: len(here) - node.level + 1], *([base] if base else [])])
            yield base
            yield from (f"{base}.{alias.name}" for alias in node.names)  # ``from pkg import plugin``


def core_imports(path: Path) -> Iterator[tuple[int, str, str | None]]:
    """``(line, module, name)`` for each import of heylook_core in ``path``; ``name`` is None for ``import x``."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "heylook_core":
                    yield node.lineno, alias.name, None
        elif isinstance(node, ast.ImportFrom) and not node.level:
            module = node.module or ""
            if module.split(".")[0] == "heylook_core":
                for alias in node.names:
                    yield node.lineno, module, alias.name


def test_every_first_party_package_is_found() -> None:
    names = {package.name for package in PACKAGES}
    assert {"heylook_echo", "heylook_llamacpp", "heylook_llama_server", "heylook_mlx", "heylook_webui"} <= names
    assert {"heylook_faster_whisper", "heylook_coreml_stt", "heylook_analytics"} <= names


@pytest.mark.parametrize("package", PACKAGES, ids=lambda path: path.name)
def test_nothing_imports_the_entry_point_module(package: Path) -> None:
    entry = f"{package.name}.plugin"
    offenders = [
        f"{path.relative_to(ROOT)} imports {entry}"
        for path in sorted(package.rglob("*.py"))
        if path.name != "plugin.py" and entry in set(imported_modules(path, package))
    ]
    assert offenders == [], "import the config schema from config.py instead"


@pytest.mark.parametrize("package", PACKAGES, ids=lambda path: path.name)
def test_a_config_schema_lives_in_config_py(package: Path) -> None:
    """A ``ProviderConfig`` subclass defined in the entry point would make the engine import it."""
    tree = ast.parse((package / "plugin.py").read_text(encoding="utf-8"))
    schemas = [
        node.name
        for node in tree.body
        if isinstance(node, ast.ClassDef)
        and any(isinstance(base, ast.Name) and base.id == "ProviderConfig" for base in node.bases)
    ]
    assert schemas == []


def test_only_the_cli_imports_the_app_module() -> None:
    core = ROOT / "heylook_core"
    importers = sorted(
        str(path.relative_to(ROOT))
        for path in core.rglob("*.py")
        if path.name != "app.py" and "heylook_core.app" in set(imported_modules(path, core))
    )
    assert importers == ["heylook_core/commands.py"]


@pytest.mark.parametrize("package", PACKAGES, ids=lambda path: path.name)
def test_plugins_import_only_the_public_surface(package: Path) -> None:
    submodules = {module.split(".")[1] for module in heylook_core.PUBLIC_MODULES if module.count(".") == 1}
    public = set(heylook_core.__all__) | submodules  # ``from heylook_core import testing``
    offenders = []
    for path in sorted(package.rglob("*.py")):
        for line, module, name in core_imports(path):
            where = f"{path.relative_to(ROOT)}:{line}"
            if module == "heylook_core":
                if name is not None and name not in public:
                    offenders.append(f"{where}: {name} is not in heylook_core.__all__")
            elif module not in heylook_core.PUBLIC_MODULES:
                offenders.append(f"{where}: {module} is internal; import from heylook_core")
    assert offenders == []


def test_the_scan_sees_lazy_and_type_checking_imports(tmp_path: Path) -> None:
    source = tmp_path / "plugin.py"
    source.write_text(
        "from typing import TYPE_CHECKING\n"
        "from heylook_core import hookimpl\n"
        "if TYPE_CHECKING:\n    from heylook_core.types import Delta\n"
        "def f():\n    import heylook_core.router\n    from heylook_core import toolcalls\n",
        encoding="utf-8",
    )
    assert list(core_imports(source)) == [
        (2, "heylook_core", "hookimpl"),
        (4, "heylook_core.types", "Delta"),
        (6, "heylook_core.router", None),
        (7, "heylook_core", "toolcalls"),
    ]
