"""The conformance suite: a pytest plugin that checks a model against what it declares, through a real server.

A provider author points it at a models.toml and the model ids to check::

    pytest --heylook-conformance --heylook-config models.toml --heylook-model my-model

The suite starts ``heylookllm serve`` on that configuration (a subprocess on a free loopback port), reads each
model's declaration from ``GET /v1/models/{id}`` (its ``capabilities``, honoured ``parameters``, ``concurrency``
and the facts its provider reports, such as ``context_length`` or ``embedding_dimensions``), and runs the checks
that apply through the official ``openai`` SDK: chat and completion framing, ``max_tokens``, ``stop``, every
declared parameter accepted and neutral where it should be, every undeclared one a 400 in OpenAI's error shape,
``seed``, cancellation, concurrency, embeddings, ``tokenize``, typed errors and transcription. A check that does
not apply to a model is skipped with the reason (``-ra`` lists them), never passed silently.

The plugin is registered through heylook-core's ``pytest11`` entry point and stays inert unless
``--heylook-conformance`` is given, so installing heylook-core changes no other test run; with plugin autoloading
off (``PYTEST_DISABLE_PLUGIN_AUTOLOAD``), ``-p heylook_core.conformance`` activates it. The checks need the
``openai`` SDK: ``pip install 'heylook-core[conformance]'``.

Instead of the command-line options, a test module may subclass :class:`~heylook_core.conformance.suite.
ConformanceSuite` and provide the target as a fixture (for models built at test time)::

    from heylook_core.conformance import Target
    from heylook_core.conformance.suite import ConformanceSuite

    class TestMyBackend(ConformanceSuite):
        heylook_models = ("my-model",)

        @pytest.fixture(scope="class")
        @classmethod
        def heylook_target(cls, tmp_path_factory):
            return Target(config=write_models_toml(tmp_path_factory.mktemp("conformance")))
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Generator, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

SUITE_MODULE = Path(__file__).with_name("cli.py")  # the module collected for --heylook-conformance
MARKER = "heylook_conformance"


@dataclass(frozen=True)
class Target:
    """What the suite runs against: a models.toml and how to start the server on it.

    ``params`` gives values for parameters a model declares that the suite has no neutral value for (a backend's
    own, such as llama-server's ``grammar``): each is sent with that value and must be accepted. ``audio`` is a
    speech recording for the transcription checks, with ``audio_text`` the words spoken in it; without one the suite
    synthesises speech with ``espeak-ng`` when it is installed.
    """

    config: Path
    env: Mapping[str, str] = field(default_factory=dict)
    args: Sequence[str] = ()
    cwd: Path | None = None
    startup_timeout: float = 120.0
    params: Mapping[str, Any] = field(default_factory=dict)
    audio: Path | None = None
    audio_text: str | None = None


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("heylook", "heylook conformance suite")
    group.addoption(
        "--heylook-conformance",
        action="store_true",
        default=False,
        help="run heylook's conformance suite against the models of --heylook-config",
    )
    group.addoption("--heylook-config", metavar="PATH", default=None, help="the models.toml to serve")
    group.addoption(
        "--heylook-model",
        metavar="ID",
        action="append",
        default=[],
        help="a model id to check (repeat, or separate with commas; default: every enabled model of the config)",
    )
    group.addoption(
        "--heylook-env",
        metavar="NAME=VALUE",
        action="append",
        default=[],
        help="an environment variable for the server (repeat)",
    )
    group.addoption(
        "--heylook-param",
        metavar="NAME=JSON",
        action="append",
        default=[],
        help="a value for a declared parameter the suite has no neutral value for (repeat)",
    )
    group.addoption("--heylook-audio", metavar="PATH", default=None, help="a speech recording for transcription")
    group.addoption("--heylook-audio-text", metavar="TEXT", default=None, help="the words spoken in --heylook-audio")
    group.addoption(
        "--heylook-startup-timeout", metavar="SECONDS", type=float, default=120.0, help="wait this long for /health"
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", f"{MARKER}: a check of heylook's conformance suite")
    if not config.getoption("heylook_conformance"):
        return
    if not config.getoption("heylook_config"):
        raise pytest.UsageError("--heylook-conformance needs --heylook-config PATH (the models.toml to serve)")
    # Collect the suite: alone when no paths were given, else next to them.
    suite = str(SUITE_MODULE)
    if config.args_source is pytest.Config.ArgsSource.ARGS:
        config.args.append(suite)
    else:
        config.args[:] = [suite]


def models_option(config: pytest.Config) -> list[str]:
    """The model ids of ``--heylook-model``; without any, the enabled models of ``--heylook-config``."""
    names = [name.strip() for value in config.getoption("heylook_model") for name in value.split(",")]
    names = [name for name in names if name]
    if names:
        return names
    path = config.getoption("heylook_config")
    if not path:
        return []
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10
        import tomli as tomllib
    with open(path, "rb") as handle:
        data = tomllib.load(handle)
    return [entry["id"] for entry in data.get("models", []) if entry.get("enabled", True) and "id" in entry]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """One run of a suite class per model: its own ``heylook_models``, else the command line's."""
    if "heylook_model_id" not in metafunc.fixturenames or not getattr(metafunc.cls, "heylook_suite", False):
        return
    models = list(getattr(metafunc.cls, "heylook_models", ()) or models_option(metafunc.config))
    if not models:
        raise pytest.UsageError(
            f"{metafunc.cls.__name__}: no model to check; set heylook_models on the class or pass --heylook-model"
        )
    metafunc.parametrize("heylook_model_id", models, ids=models, scope="class")


def _pairs(values: Sequence[str], option: str) -> Iterator[tuple[str, str]]:
    for value in values:
        name, sep, rest = value.partition("=")
        if not sep or not name:
            raise pytest.UsageError(f"{option} takes NAME=VALUE; got '{value}'")
        yield name, rest


@pytest.fixture(scope="session")
def heylook_target(pytestconfig: pytest.Config) -> Target:
    """The target given on the command line; a suite class overrides this fixture to build its own."""
    path = pytestconfig.getoption("heylook_config")
    if not path:
        raise pytest.UsageError("the conformance suite needs --heylook-config PATH, or a heylook_target fixture")
    params: dict[str, Any] = {}
    for name, text in _pairs(pytestconfig.getoption("heylook_param"), "--heylook-param"):
        try:
            params[name] = json.loads(text)
        except json.JSONDecodeError as error:
            raise pytest.UsageError(f"--heylook-param {name}: the value is not JSON ({error})") from None
    audio = pytestconfig.getoption("heylook_audio")
    return Target(
        config=Path(path).resolve(),
        env=dict(_pairs(pytestconfig.getoption("heylook_env"), "--heylook-env")),
        startup_timeout=pytestconfig.getoption("heylook_startup_timeout"),
        params=params,
        audio=Path(audio).resolve() if audio else None,
        audio_text=pytestconfig.getoption("heylook_audio_text"),
        cwd=Path(os.getcwd()),
    )


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """A failed check carries the end of the server's log."""
    report: pytest.TestReport = yield
    if report.failed and item.get_closest_marker(MARKER) is not None:
        subject = getattr(item, "funcargs", {}).get("heylook")
        log = getattr(subject, "server_log", None)
        if log is not None:
            tail = "\n".join(log().splitlines()[-60:])
            report.sections.append(("heylook server log (last lines)", tail))
    return report


__all__ = ["MARKER", "Target", "models_option"]
