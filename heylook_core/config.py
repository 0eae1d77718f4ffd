"""``models.toml`` and server settings.

The file is found at ``--config PATH``, then ``$HEYLOOK_CONFIG``, then ``./models.toml``, then the user config dir
(``platformdirs``). With none, the models that plugins offer through ``register_models`` are served. Every table is
validated strictly: an unknown key or a wrong type is a :class:`ConfigError` naming the file, the model id and the
key, raised before the server starts. Each model's ``[models.config]`` is validated by its provider's own schema.
"""

from __future__ import annotations

import logging
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from heylook_core.errors import ConfigError
from heylook_core.parameters import SamplingFields

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10
    import tomli as tomllib

if TYPE_CHECKING:
    from heylook_core.providers import Capability, ProviderSpec

CONFIG_NAME = "models.toml"

logger = logging.getLogger(__name__)


class _Strict(BaseModel):
    # strict: TOML has real types, so "yes" is not a bool and "8080" is not a port
    model_config = ConfigDict(extra="forbid", strict=True, protected_namespaces=(), allow_inf_nan=False)


class SamplingDefaults(SamplingFields):
    """Defaults for request parameters; a request's own value wins, then the model's, then the server's.

    The sampling fields and their ranges are the requests' own (:class:`~heylook_core.parameters.SamplingFields`).
    """

    model_config = _Strict.model_config

    stop: list[str] | None = None
    enable_thinking: bool | None = None

    def values(self) -> dict[str, Any]:
        return self.model_dump(exclude_none=True)


class ModelEntry(_Strict):
    """One ``[[models]]`` table."""

    id: str = Field(min_length=1)
    provider: str = Field(min_length=1)
    enabled: bool = True
    aliases: list[str] = Field(default_factory=list)
    pinned: bool = False
    ttl_seconds: float | None = Field(default=None, gt=0)
    description: str = ""
    owned_by: str = "heylook"
    think_tags: list[str] = Field(default_factory=lambda: ["<think>", "</think>"])
    tool_parser: str | None = Field(
        default=None,
        description="the tool-call format of the model's output (hermes, llama3, mistral, deepseek, harmony, none); "
        "default: detected from the chat template by the provider",
    )
    config: dict[str, Any] = Field(default_factory=dict)
    defaults: SamplingDefaults = Field(default_factory=SamplingDefaults)
    # /v1/embeddings input given as token ids is read as this model's vocabulary only when set (clients such as
    # LangChain send OpenAI's tiktoken ids by default)
    embedding_token_ids: bool = False

    @field_validator("think_tags")
    @classmethod
    def _two_tags(cls, value: list[str]) -> list[str]:
        if value and (len(value) != 2 or not all(value)):
            raise ValueError("think_tags is [opening, closing] or [] to turn reasoning parsing off")
        return value

    @field_validator("tool_parser")
    @classmethod
    def _known_parser(cls, value: str | None) -> str | None:
        if value is None or value.strip().lower() == "none":
            return value and "none"
        from heylook_core.toolcalls import canonical, format_names

        name = canonical(value)
        if name is None:
            raise ValueError(f"unknown tool_parser {value!r}; one of: {', '.join(format_names())}, none")
        return name


class NamedKey(_Strict):
    """A named API key in ``[server] api_keys``, optionally with per-minute limits."""

    name: str = Field(min_length=1, description="shown in logs, analytics and metrics instead of the key")
    key: str = Field(min_length=1)
    rpm: int | None = Field(default=None, ge=1, description="requests per minute; more get 429")
    tpm: int | None = Field(default=None, ge=1, description="prompt plus generated tokens per minute; more get 429")

    @field_validator("name", "key")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("blank; give a name and a key")
        return value.strip()


class ServerSettings(_Strict):
    """The ``[server]`` table."""

    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    api_keys: list[str | NamedKey] = Field(default_factory=list)
    api_key_file: str | None = Field(
        default=None, description="a file of 'name:key' lines, read at start and on admin reload"
    )
    admin_key: str | None = None
    cors_origins: list[str] = Field(default_factory=list)
    max_body_bytes: int = Field(default=64 * 1024 * 1024, ge=1024)
    max_queue: int = Field(default=32, ge=0, description="requests waiting per model before 503")
    queue_timeout_s: float = Field(default=600.0, gt=0)
    load_timeout_s: float = Field(default=900.0, gt=0, description="a model load that takes longer is reported")
    stall_timeout_s: float = Field(
        default=600.0, gt=0, description="a model's worker that yields nothing for this long counts as wedged"
    )
    max_audio_seconds: float = Field(default=4 * 3600.0, gt=0)
    allow_remote_images: bool = False
    anthropic_default_model: str | None = Field(
        default=None, description="the model that unknown model names on /v1/messages go to; off when unset"
    )
    responses_persist: bool = Field(default=True, description="keep stored Responses API responses across restarts")
    responses_path: str | None = Field(default=None, description="the SQLite file; default: the user data dir")
    responses_max_count: int = Field(default=1000, ge=1, description="stored responses kept, oldest out first")
    responses_max_bytes: int = Field(default=64 * 1024 * 1024, ge=1024, description="bytes of stored responses kept")
    ollama_port: int | None = Field(
        default=None, ge=1, le=65535, description="a second listener for Ollama's clients (e.g. 11434); off when unset"
    )
    allowed_hosts: list[str] = Field(default_factory=list, description="Host names served besides loopback")
    shutdown_grace_s: float = Field(
        default=30.0, ge=0, description="on SIGTERM, how long requests in flight may take to finish"
    )
    max_image_pixels: int = Field(default=50_000_000, ge=1, description="larger images (width x height) get 400")
    access_log: bool = Field(default=True, description="one log line per request: method, path, status, time, tokens")

    @field_validator("api_keys")
    @classmethod
    def _no_blank_keys(cls, value: list[str | NamedKey]) -> list[str | NamedKey]:
        if any(isinstance(key, str) and not key.strip() for key in value):
            raise ValueError("api_keys holds a blank key; remove it (an empty list turns keys off)")
        names = [key.name for key in value if isinstance(key, NamedKey)]
        if len(names) != len(set(names)):
            raise ValueError(f"api_keys uses a name twice: {sorted({n for n in names if names.count(n) > 1})}")
        return [key.strip() if isinstance(key, str) else key for key in value]

    def keys_required(self) -> bool:
        """Whether ``/v1`` needs a key: any in ``api_keys`` or an ``api_key_file``."""
        return bool(self.api_keys or self.api_key_file)

    @field_validator("admin_key")
    @classmethod
    def _no_blank_admin_key(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("admin_key is blank; remove the key to turn admin routes off")
        return value.strip() if value is not None else None


def parse_keys(value: str, source: str) -> list[str]:
    """Keys from a comma list (``HEYLOOK_API_KEY``, ``--api-key``); a blank entry is a :class:`ConfigError`."""
    keys = [key.strip() for key in value.split(",")]
    if any(not key for key in keys):
        raise ConfigError(
            f"{source} holds a blank API key ({value!r}); give one or more keys separated by commas, "
            "or unset it to use [server] api_keys"
        )
    return keys


class ConfigFile(_Strict):
    """The whole models.toml."""

    default_model: str | None = None
    max_loaded_models: int = Field(default=2, ge=1)
    server: ServerSettings = Field(default_factory=ServerSettings)
    defaults: SamplingDefaults = Field(default_factory=SamplingDefaults)
    models: list[ModelEntry] = Field(default_factory=list)


@dataclass
class ConfiguredModel:
    """A model entry joined with its provider: validated config, capabilities, parameters, concurrency."""

    entry: ModelEntry
    spec: ProviderSpec[Any] | None
    config: Any
    capabilities: frozenset[Capability]
    parameters: frozenset[str]
    concurrency: int
    unavailable: str | None = None  # why it cannot be served (its provider's plugin failed)
    # declared parameters the loaded model cannot honour, with the reason (Provider.refused_parameters); the router
    # takes them out of ``parameters`` once the model has loaded
    refused: dict[str, str] = field(default_factory=dict)

    def refuse(self, refused: dict[str, str]) -> list[str]:
        """Take ``refused`` out of the declared parameters; the names that were declared."""
        names = sorted(name for name in refused if name in self.parameters)
        if names:
            self.refused.update({name: refused[name] for name in names})
            self.parameters = self.parameters - set(names)
        return names

    @property
    def id(self) -> str:
        return self.entry.id


@dataclass
class Settings:
    """Everything the server runs with, after the config file, environment and CLI flags are merged."""

    server: ServerSettings = field(default_factory=ServerSettings)
    default_model: str | None = None
    max_loaded_models: int = 2
    defaults: SamplingDefaults = field(default_factory=SamplingDefaults)
    models: list[ConfiguredModel] = field(default_factory=list)
    source: str = "plugins"  # the config file's path, or "plugins" when the offered models are served

    def model_ids(self) -> list[str]:
        return [m.id for m in self.models]


def find_config(explicit: str | os.PathLike[str] | None = None) -> Path | None:
    """The config file to read, in the documented order; an explicitly named file must exist."""
    if explicit:
        path = Path(explicit)
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        return path
    env = os.environ.get("HEYLOOK_CONFIG")
    if env:
        path = Path(env)
        if not path.is_file():
            raise ConfigError(f"config file not found: {path} (from $HEYLOOK_CONFIG)")
        return path
    local = Path.cwd() / CONFIG_NAME
    if local.is_file():
        return local
    from platformdirs import user_config_path

    user = user_config_path("heylook") / CONFIG_NAME
    return user if user.is_file() else None


def read_config_file(path: Path, providers: dict[str, ProviderSpec[Any]] | None = None) -> ConfigFile:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"{path}: cannot read: {error}") from error
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path}: not valid TOML: {error}") from error
    try:
        return ConfigFile.model_validate(data)
    except ValidationError as error:
        raise ConfigError(_describe(path, error, data, providers or {})) from error


def _describe(
    path: Path | str, error: ValidationError, data: dict[str, Any], providers: dict[str, ProviderSpec[Any]]
) -> str:
    lines = [f"{path}: invalid configuration"]
    listed = data.get("models")
    models: list[Any] = listed if isinstance(listed, list) else []
    for item in error.errors():
        loc = list(item["loc"])
        where = ".".join(str(part) for part in loc)
        if len(loc) >= 2 and loc[0] == "models" and isinstance(loc[1], int) and loc[1] < len(models):
            model_id = models[loc[1]].get("id", f"#{loc[1]}") if isinstance(models[loc[1]], dict) else loc[1]
            where = f"model '{model_id}': " + ".".join(str(part) for part in loc[2:])
        message = "unknown key" if item["type"] == "extra_forbidden" else item["msg"]
        if item["type"] == "extra_forbidden" and len(loc) == 3 and loc[0] == "models":
            entry = models[loc[1]] if isinstance(loc[1], int) and loc[1] < len(models) else {}
            spec = providers.get(entry.get("provider", "")) if isinstance(entry, dict) else None
            if spec is not None and str(loc[2]) in config_keys(spec.config_schema):
                message = (
                    f"unknown key of [[models]]; '{loc[2]}' is a '{spec.name}' setting: put it under [models.config]"
                )
            else:
                message = f"unknown key (keys of [[models]]: {', '.join(sorted(ModelEntry.model_fields))})"
        lines.append(f"  {where}: {message}")
    return "\n".join(lines)


def configure_model(
    entry: ModelEntry, providers: dict[str, ProviderSpec[Any]], source: str, failed_plugins: list[str] | None = None
) -> ConfiguredModel:
    """Validate ``entry.config`` with its provider's schema and resolve what the model can do."""
    spec = providers.get(entry.provider)
    if spec is None:
        if failed_plugins:
            reason = (
                f"provider '{entry.provider}' is not available: plugins that failed to load: "
                f"{', '.join(failed_plugins)} (see 'heylookllm plugins')"
            )
            return ConfiguredModel(entry, None, None, frozenset(), frozenset(), 1, unavailable=reason)
        known = ", ".join(sorted(providers)) or "none (install a backend such as heylook-llamacpp)"
        raise ConfigError(
            f"{source}: model '{entry.id}': unknown provider '{entry.provider}'; installed providers: {known}"
        )
    valid = ", ".join(sorted(config_keys(spec.config_schema))) or "none"
    head = f"{source}: model '{entry.id}' (provider '{spec.name}'): invalid [models.config]"
    try:
        config = spec.config_schema.model_validate(entry.config)
    except ValidationError as error:
        lines = [head]
        for item in error.errors():
            key = ".".join(str(part) for part in item["loc"]) or "(table)"
            message = f"unknown key (valid keys: {valid})" if item["type"] == "extra_forbidden" else item["msg"]
            lines.append(f"  config.{key}: {message}")
        raise ConfigError("\n".join(lines)) from error
    # A schema that is a plain pydantic model ignores unknown keys; heylook never does, whatever the base class.
    unknown = sorted(set(entry.config) - config_keys(spec.config_schema))
    if unknown:
        lines = [head] + [f"  config.{key}: unknown key (valid keys: {valid})" for key in unknown]
        raise ConfigError("\n".join(lines))
    parameters = spec.parameters_for(config)
    for name in entry.defaults.values():
        if name not in parameters and name not in CORE_DEFAULTS:
            honoured = ", ".join(sorted(parameters)) or "none"
            raise ConfigError(
                f"{source}: model '{entry.id}': defaults.{name}: provider '{spec.name}' does not honour '{name}', "
                f"so this default could never apply (it honours: {honoured})"
            )
    return ConfiguredModel(
        entry,
        spec,
        config,
        spec.capabilities_for(config),
        parameters,
        spec.concurrency_for(config),
    )


# Defaults the core applies itself, whatever the provider declares.
CORE_DEFAULTS = frozenset({"max_tokens"})


def config_keys(schema: type[BaseModel]) -> set[str]:
    """The keys a provider's config schema takes (field names and their aliases)."""
    keys: set[str] = set()
    for name, info in schema.model_fields.items():
        keys.add(name)
        if info.alias:
            keys.add(info.alias)
        if isinstance(info.validation_alias, str):
            keys.add(info.validation_alias)
    return keys


def load_settings(
    providers: dict[str, ProviderSpec[Any]],
    offered: list[ModelEntry],
    *,
    config_path: str | os.PathLike[str] | None = None,
    failed_plugins: list[str] | None = None,
) -> Settings:
    """Read the config (or take the offered models) and validate every model against its provider."""
    path = find_config(config_path)
    if path is not None:
        file = read_config_file(path, providers)
        source = str(path)
        entries = [m for m in file.models if m.enabled]
    else:
        file = ConfigFile()
        source = "plugins"
        entries = list(offered)
    seen: dict[str, str] = {}
    for entry in entries:
        for name in [entry.id, *entry.aliases]:
            if name in seen:
                raise ConfigError(f"{source}: model '{entry.id}': name '{name}' is already used by '{seen[name]}'")
            seen[name] = entry.id
    models = [configure_model(entry, providers, source, failed_plugins) for entry in entries]
    default = file.default_model
    if default is not None and default not in seen:
        raise ConfigError(f"{source}: default_model '{default}' is not a configured model id or alias")
    if default is None and models:
        default = models[0].id
    server = file.server.model_copy()
    env_keys = os.environ.get("HEYLOOK_API_KEY")
    if env_keys:  # an empty variable counts as unset; a blank key (" ", ",") is an error, never "no keys"
        keys = parse_keys(env_keys, "HEYLOOK_API_KEY")
        if server.api_keys:
            logger.warning(
                "HEYLOOK_API_KEY replaces the %d API key(s) of [server] api_keys in %s", len(server.api_keys), source
            )
        server.api_keys = [*keys]
    env_admin = os.environ.get("HEYLOOK_ADMIN_KEY")
    if env_admin:
        if not env_admin.strip():
            raise ConfigError("HEYLOOK_ADMIN_KEY is blank; unset it, or give a key")
        if server.admin_key:
            logger.warning("HEYLOOK_ADMIN_KEY replaces [server] admin_key in %s", source)
        server.admin_key = env_admin.strip()
    return Settings(
        server=server,
        default_model=default,
        max_loaded_models=file.max_loaded_models,
        defaults=file.defaults,
        models=models,
        source=source,
    )
