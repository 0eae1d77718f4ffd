"""models.toml: discovery order, the issue's example, and errors that name the file, the model and the key."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from heylook_core.config import find_config
from heylook_core.errors import ConfigError
from heylook_core.plugins import PluginHost
from tests.core.conftest import EXAMPLE

ROOT = Path(__file__).resolve().parents[2]


def settings_for(path: Path | None):  # type: ignore[no-untyped-def]
    from heylook_core.config import load_settings

    host = PluginHost().load()
    return load_settings(host.providers, host.offered_models, config_path=path)


def test_issue_example_loads(write_config: Callable[[str], Path]) -> None:
    settings = settings_for(write_config(EXAMPLE))
    assert settings.default_model == "echo-small"
    assert settings.max_loaded_models == 2
    [model] = settings.models
    assert model.entry.aliases == ["echo"]
    assert model.config.token_delay_ms == 0
    assert settings.server.host == "127.0.0.1" and settings.server.port == 8080


def test_shipped_example_file_loads() -> None:
    settings = settings_for(ROOT / "models.toml.example")
    assert settings.models


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('colour = "red"\n', ["colour", "unknown key"]),
        ('[[models]]\nid = "m1"\nprovider = "echo"\nttl = 5\n', ["model 'm1'", "ttl", "unknown key"]),
        ('[[models]]\nid = "m1"\nprovider = "echo"\npinned = "yes"\n', ["model 'm1'", "pinned"]),
        (
            '[[models]]\nid = "m1"\nprovider = "echo"\n[models.config]\ntoken_delay = 1\n',
            ["model 'm1'", "config.token_delay", "unknown key"],
        ),
        (
            '[[models]]\nid = "m1"\nprovider = "echo"\n[models.config]\ntoken_delay_ms = "slow"\n',
            ["model 'm1'", "config.token_delay_ms"],
        ),
        ('[[models]]\nid = "m1"\nprovider = "echo"\n[models.defaults]\ntemprature = 1\n', ["model 'm1'", "temprature"]),
        ('[[models]]\nid = "m1"\nprovider = "nope"\n', ["model 'm1'", "unknown provider 'nope'", "echo"]),
        ('[server]\nport = "eighty"\n', ["server.port"]),
        ('default_model = "x"\n[[models]]\nid = "m1"\nprovider = "echo"\n', ["default_model 'x'"]),
        (
            '[[models]]\nid = "m1"\nprovider = "echo"\n[[models]]\nid = "m2"\nprovider = "echo"\naliases = ["m1"]\n',
            ["'m1'", "already used"],
        ),
        ("[[models]\n", ["not valid TOML"]),
    ],
)
def test_errors_name_file_model_and_key(write_config: Callable[[str], Path], text: str, expected: list[str]) -> None:
    path = write_config(text)
    with pytest.raises(ConfigError) as caught:
        settings_for(path)
    message = str(caught.value)
    assert str(path) in message
    for part in expected:
        assert part in message


def test_discovery_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    user_dir = tmp_path / "xdg-config" / "heylook"
    user_dir.mkdir(parents=True)
    (user_dir / "models.toml").write_text(EXAMPLE)
    assert find_config() == user_dir / "models.toml"
    local = tmp_path / "models.toml"
    local.write_text(EXAMPLE)
    assert find_config() == local
    env = tmp_path / "env.toml"
    env.write_text(EXAMPLE)
    monkeypatch.setenv("HEYLOOK_CONFIG", str(env))
    assert find_config() == env
    explicit = tmp_path / "explicit.toml"
    explicit.write_text(EXAMPLE)
    assert find_config(explicit) == explicit
    with pytest.raises(ConfigError, match="not found"):
        find_config(tmp_path / "missing.toml")


def test_no_config_serves_offered_models() -> None:
    settings = settings_for(None)
    assert settings.source == "plugins"
    assert settings.model_ids() == ["echo"]


def test_disabled_models_are_not_served(write_config: Callable[[str], Path]) -> None:
    text = '[[models]]\nid = "on"\nprovider = "echo"\n[[models]]\nid = "off"\nprovider = "echo"\nenabled = false\n'
    assert settings_for(write_config(text)).model_ids() == ["on"]


def test_api_key_from_environment(write_config: Callable[[str], Path], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HEYLOOK_API_KEY", "a, b")
    assert settings_for(write_config(EXAMPLE)).server.api_keys == ["a", "b"]


def test_model_of_a_failed_plugin_is_unavailable_not_fatal(write_config: Callable[[str], Path]) -> None:
    from heylook_core.config import load_settings

    host = PluginHost().load()
    path = write_config('[[models]]\nid = "m1"\nprovider = "gone"\n')
    settings = load_settings(host.providers, [], config_path=path, failed_plugins=["gone-plugin (ImportError)"])
    assert settings.models[0].unavailable and "gone-plugin" in settings.models[0].unavailable


class PlainSchemaPlugin:
    """A third party's provider whose config schema is a plain pydantic model (which ignores unknown keys)."""

    from heylook_core import hookimpl

    @hookimpl
    def register_providers(self, register):  # type: ignore[no-untyped-def]
        from dataclasses import replace

        from pydantic import BaseModel, create_model

        from heylook_echo.config import EchoConfig
        from heylook_echo.plugin import SPEC

        # the echo engine's settings, on a plain BaseModel instead of heylook's ProviderConfig
        fields = {name: (info.annotation, info) for name, info in EchoConfig.model_fields.items()}
        Plain = create_model("Plain", __base__=BaseModel, **fields)  # type: ignore[call-overload]

        register(
            replace(SPEC, name="plain", config_schema=Plain, parameters=frozenset({"temperature"}), max_concurrency=1)
        )


def plain_settings(path: Path):  # type: ignore[no-untyped-def]
    from heylook_core.config import load_settings

    host = PluginHost(extra_plugins=[("plain", PlainSchemaPlugin())]).load()
    return load_settings(host.providers, host.offered_models, config_path=path)


def test_unknown_key_of_a_plain_pydantic_schema_is_an_error(write_config: Callable[[str], Path]) -> None:
    path = write_config('[[models]]\nid = "p"\nprovider = "plain"\n[models.config]\nnot_a_key = 3\n')
    with pytest.raises(ConfigError) as caught:
        plain_settings(path)
    message = str(caught.value)
    assert str(path) in message and "model 'p'" in message and "config.not_a_key: unknown key" in message
    assert "valid keys:" in message and "token_delay_ms" in message


def test_a_model_default_its_provider_cannot_honour_is_a_startup_error(write_config: Callable[[str], Path]) -> None:
    path = write_config('[[models]]\nid = "p"\nprovider = "plain"\n[models.defaults]\ntop_k = 5\n')
    with pytest.raises(ConfigError) as caught:
        plain_settings(path)
    message = str(caught.value)
    assert str(path) in message and "model 'p'" in message and "defaults.top_k" in message
    assert "does not honour 'top_k'" in message
    fine = write_config(
        '[[models]]\nid = "p"\nprovider = "plain"\n[models.defaults]\ntemperature = 0.5\nmax_tokens = 9\n'
    )
    assert plain_settings(fine).models[0].entry.defaults.temperature == 0.5


def test_a_provider_setting_on_the_model_table_says_where_it_belongs(write_config: Callable[[str], Path]) -> None:
    path = write_config('[[models]]\nid = "e"\nprovider = "echo"\ntoken_delay_ms = 5\n')
    with pytest.raises(ConfigError) as caught:
        settings_for(path)
    assert "model 'e': token_delay_ms" in str(caught.value)
    assert "put it under [models.config]" in str(caught.value)


class SeenTopK:
    from heylook_core import hookimpl

    def __init__(self) -> None:
        self.seen: dict[str, object] = {}

    @hookimpl
    def wrap_generation(self, request, context):  # type: ignore[no-untyped-def]
        self.seen[context.model_id] = request.top_k
        return None


def test_a_server_default_applies_only_where_honoured(make_client: Callable[..., object]) -> None:
    seen = SeenTopK()
    client = make_client(
        '[defaults]\ntop_k = 5\n[[models]]\nid = "p"\nprovider = "plain"\n[[models]]\nid = "e"\nprovider = "echo"\n',
        plugins=[("plain", PlainSchemaPlugin()), ("seen", seen)],
    )
    for model in ("p", "e"):
        body = {"model": model, "messages": [{"role": "user", "content": "x"}]}
        assert client.post("/v1/chat/completions", json=body).status_code == 200  # type: ignore[attr-defined]
    assert seen.seen == {"p": None, "e": 5}  # top_k reached only the provider that honours it
