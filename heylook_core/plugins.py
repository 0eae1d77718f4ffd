"""Plugin discovery and isolation.

Plugins are distributions that declare an entry point in the ``heylook`` group; the entry point names a module
(or object) whose functions carry ``@hookimpl``. :class:`PluginHost` loads them one at a time so that a plugin
whose import or registration raises is unregistered and recorded as failed while the rest load; in strict mode
(``HEYLOOK_STRICT_PLUGINS=1``) that is a startup error instead. Environment knobs:

* ``HEYLOOK_LOAD_PLUGINS``: comma-separated entry-point names to load (set but empty: load none);
* ``HEYLOOK_DISABLE_PLUGINS``: names to skip;
* ``HEYLOOK_STRICT_PLUGINS=1``: fail on any plugin error;
* ``HEYLOOK_TRACE_PLUGINS=1``: log every hook call at debug level.

Loading imports plugin modules only; providers import their engines when a model loads.
"""

from __future__ import annotations

import inspect
import logging
import os
import platform
import sys
import time
import traceback
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from importlib import metadata
from typing import TYPE_CHECKING, Any

import pluggy

from heylook_core import hookspecs
from heylook_core.errors import HeylookError, PluginError, PluginLoadError

if TYPE_CHECKING:
    import argparse

    from fastapi import APIRouter, FastAPI

    from heylook_core.config import ModelEntry, Settings
    from heylook_core.middleware import GenerationContext, Wrapper
    from heylook_core.providers import ProviderSpec

logger = logging.getLogger(__name__)

GROUP = "heylook"
BUILTIN_PLUGINS = ("heylook_core.commands",)


@dataclass
class PluginRecord:
    """What ``heylookllm plugins`` and ``GET /-/plugins`` report for one plugin."""

    name: str
    module: str
    distribution: str | None = None
    version: str | None = None
    status: str = "loaded"  # loaded | failed | disabled
    builtin: bool = False
    hooks: list[str] = field(default_factory=list)
    providers: list[str] = field(default_factory=list)
    models: list[str] = field(default_factory=list)
    load_ms: float = 0.0
    error: str | None = None
    warnings: list[str] = field(default_factory=list)
    # offered models (register_models) that their provider refused: {"model", "error"}; the plugin's others serve
    failed_models: list[dict[str, str]] = field(default_factory=list)
    traceback: str | None = None  # of the failure, for ``heylookllm plugins --verbose``

    def to_dict(self, *, verbose: bool = False) -> dict[str, Any]:
        data = asdict(self)
        if not verbose:
            data.pop("traceback")
        return data

    @property
    def origin(self) -> str:
        """The distribution (and version) the plugin came from, else its module."""
        if self.distribution:
            return f"{self.distribution} {self.version}" if self.version else self.distribution
        return self.module


def _env_list(name: str) -> set[str] | None:
    value = os.environ.get(name)
    if value is None:
        return None
    return {item.strip() for item in value.split(",") if item.strip()}


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


def python_environment() -> dict[str, str]:
    """The interpreter heylook runs in: which one matters when a plugin is installed somewhere else."""
    return {
        "executable": sys.executable,
        "version": platform.python_version(),
        "prefix": sys.prefix,
        "platform": platform.platform(),
    }


class PluginHost:
    """Loads plugins, keeps their records, and calls their hooks with each plugin isolated."""

    def __init__(
        self,
        *,
        extra_plugins: Iterable[tuple[str, object]] = (),
        entry_points: bool = True,
        load: set[str] | None = None,
        disable: set[str] | None = None,
        strict: bool | None = None,
        trace: bool | None = None,
        defer_fatal: bool = False,
    ) -> None:
        """``defer_fatal``: keep errors that stop a server (strict mode, provider name clashes) in ``fatal`` instead
        of raising them, so that ``heylookllm plugins`` and ``doctor`` can show them; :meth:`check_fatal` raises."""
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self.records: dict[str, PluginRecord] = {}
        self.providers: dict[str, ProviderSpec] = {}
        self.offered_models: list[ModelEntry] = []
        self._extra = list(extra_plugins)
        self._entry_points = entry_points
        self._load = load if load is not None else _env_list("HEYLOOK_LOAD_PLUGINS")
        self._disable = disable if disable is not None else (_env_list("HEYLOOK_DISABLE_PLUGINS") or set())
        self.strict = strict if strict is not None else _env_flag("HEYLOOK_STRICT_PLUGINS")
        if trace if trace is not None else _env_flag("HEYLOOK_TRACE_PLUGINS"):
            self.pm.trace.root.setwriter(logger.debug)
            self.pm.enable_tracing()
        self._started: list[str] = []
        self._defer_fatal = defer_fatal
        self.fatal: list[str] = []
        self._offered_by: dict[int, str] = {}  # id(ModelEntry) -> the plugin that offered it

    # -- loading ---------------------------------------------------------------------------------------------------

    def load(self) -> PluginHost:
        """Load built-ins, entry points and extra plugins; raise :class:`PluginLoadError` on fatal problems."""
        for module_name in BUILTIN_PLUGINS:
            self._load_one(module_name.rsplit(".", 1)[-1], module_name, lambda m=module_name: _import(m), builtin=True)
        if self._entry_points:
            for ep in sorted(metadata.entry_points(group=GROUP), key=lambda e: e.name):
                dist = getattr(ep, "dist", None)
                record_dist = (dist.name if dist else None, dist.version if dist else None)
                if (self._load is not None and ep.name not in self._load) or ep.name in self._disable:
                    self.records[ep.name] = PluginRecord(
                        ep.name, ep.value, *record_dist, status="disabled", error="not selected by environment"
                    )
                    continue
                self._load_one(ep.name, ep.value, ep.load, dist=record_dist)
        for name, plugin in self._extra:
            self._load_one(name, getattr(plugin, "__name__", type(plugin).__name__), lambda p=plugin: p)
        self._vet_offers()
        return self

    def check_fatal(self) -> None:
        """Raise the first error that stops a server, where :attr:`fatal` holds one (``defer_fatal``)."""
        if self.fatal:
            raise PluginLoadError(self.fatal[0])

    def _stop(self, message: str, error: BaseException | None = None) -> None:
        self.fatal.append(message)
        if not self._defer_fatal:
            raise PluginLoadError(message) from error

    def _vet_offers(self) -> None:
        """Check every offered model against its provider now: a refused offer fails alone, named by its plugin."""
        from heylook_core.config import configure_model
        from heylook_core.errors import ConfigError

        failed = [f"{r.name} ({r.error})" for r in self.failed()]
        kept: list[ModelEntry] = []
        names: dict[str, str] = {}
        for entry in self.offered_models:
            plugin = self._offered_by.get(id(entry), "?")
            record = self.records.get(plugin) or PluginRecord(plugin, plugin)
            source = f"plugin '{plugin}' ({record.origin})"
            try:
                for name in [entry.id, *entry.aliases]:
                    if name in names:
                        raise ConfigError(
                            f"{source}: model '{entry.id}': name '{name}' is already offered by {names[name]}"
                        )
                configure_model(entry, self.providers, source, failed)
            except ConfigError as error:
                record.failed_models.append({"model": entry.id, "error": str(error)})
                if entry.id in record.models:
                    record.models.remove(entry.id)
                if self.strict:
                    self._stop(f"{error}\n  (an offered model; HEYLOOK_STRICT_PLUGINS is set)", error)
                logger.error("%s\n  (an offered model: the others serve without it)", error)
                continue
            for name in [entry.id, *entry.aliases]:
                names[name] = f"plugin '{plugin}'"
            kept.append(entry)
        self.offered_models = kept

    def _hooks_without_marker(self, plugin: object, record: PluginRecord) -> None:
        """Functions named like hooks that lack ``@hookimpl`` are never called: say so."""
        marker = f"{hookspecs.PROJECT}_impl"
        for hook in sorted(self.pm.hook.__dict__):
            if hook.startswith("_") or hook in record.hooks:
                continue
            function = getattr(plugin, hook, None)
            if callable(function) and not hasattr(function, marker):
                warning = f"'{hook}' is named like a hook but has no @hookimpl, so it is never called"
                record.warnings.append(warning)
                logger.warning("plugin '%s' (%s): %s", record.name, record.origin, warning)

    def _load_one(
        self,
        name: str,
        module: str,
        loader: Callable[[], object],
        *,
        dist: tuple[str | None, str | None] = (None, None),
        builtin: bool = False,
    ) -> None:
        record = PluginRecord(name, module, dist[0], dist[1], builtin=builtin)
        self.records[name] = record
        start = time.perf_counter()
        plugin: object | None = None
        try:
            plugin = loader()
            if self.pm.is_registered(plugin) or self.pm.get_plugin(name) is not None:
                raise PluginLoadError(f"plugin '{name}' is registered twice")
            self.pm.register(plugin, name=name)
            record.hooks = sorted(caller.name for caller in self.pm.get_hookcallers(plugin) or [])
            unknown = [caller.name for caller in self.pm.get_hookcallers(plugin) or [] if caller.spec is None]
            if unknown:
                raise PluginLoadError(f"plugin '{name}' implements unknown hooks: {', '.join(sorted(unknown))}")
            self._hooks_without_marker(plugin, record)
            self._register_from(name, plugin, record)
        except PluginLoadError as error:
            self._fail(record, plugin, error, fatal="provider name" in str(error))
        except Exception as error:  # any error from a third-party plugin is isolated
            self._fail(record, plugin, error)
        finally:
            record.load_ms = round((time.perf_counter() - start) * 1000, 3)

    def _fail(self, record: PluginRecord, plugin: object | None, error: BaseException, *, fatal: bool = False) -> None:
        record.status = "failed"
        record.error = f"{type(error).__name__}: {error}"
        record.traceback = "".join(traceback.format_exception(type(error), error, error.__traceback__))
        if plugin is not None and self.pm.is_registered(plugin):
            self.pm.unregister(plugin)
        for provider in record.providers:
            self.providers.pop(provider, None)
        self.offered_models = [m for m in self.offered_models if m.id not in record.models]
        record.providers, record.models = [], []
        message = f"plugin '{record.name}' ({record.origin}) failed to load: {record.error}"
        logger.debug("plugin '%s' failed to load", record.name, exc_info=error)
        if fatal:
            self._stop(str(error), error)
            logger.error("%s", error)
            return
        if self.strict:
            self._stop(message + " (HEYLOOK_STRICT_PLUGINS is set)", error)
        logger.error("%s; the server starts without it", message)

    def _register_from(self, name: str, plugin: object, record: PluginRecord) -> None:
        from heylook_core.config import ModelEntry

        def register_provider(spec: ProviderSpec) -> None:
            existing = self.providers.get(spec.name)
            if existing is not None:
                first = self.records.get(existing.plugin or "")
                raise PluginLoadError(
                    f"provider name '{spec.name}' is registered by both plugin '{existing.plugin}' "
                    f"({first.origin if first else existing.plugin}) and plugin '{name}' ({record.origin}); "
                    "disable one of them with HEYLOOK_DISABLE_PLUGINS"
                )
            spec = _with_plugin(spec, name)
            self.providers[spec.name] = spec
            record.providers.append(spec.name)

        def register_model(entry: ModelEntry | dict[str, Any]) -> None:
            model = entry if isinstance(entry, ModelEntry) else ModelEntry.model_validate(entry)
            self.offered_models.append(model)
            self._offered_by[id(model)] = name
            record.models.append(model.id)

        for impl in self.pm.hook.register_providers.get_hookimpls():
            if impl.plugin is plugin:
                impl.function(**_kwargs(impl, register=register_provider))
        for impl in self.pm.hook.register_models.get_hookimpls():
            if impl.plugin is plugin:
                impl.function(**_kwargs(impl, register=register_model))

    # -- hooks -----------------------------------------------------------------------------------------------------

    def failed(self) -> list[PluginRecord]:
        return [r for r in self.records.values() if r.status == "failed"]

    def wrappers(self, request: Any, context: GenerationContext) -> list[tuple[str, Wrapper]]:
        """Each plugin's wrapper for this generation, in hook call order (the first is outermost)."""
        result: list[tuple[str, Wrapper]] = []
        for impl in reversed(self.pm.hook.wrap_generation.get_hookimpls()):
            try:
                wrapper = impl.function(**_kwargs(impl, request=request, context=context))
            except HeylookError:
                raise
            except Exception as error:  # the hook itself, not its wrapper, raised: attribute it the same way
                record = self.records.get(impl.plugin_name)
                origin = f" from {record.distribution} {record.version}" if record and record.distribution else ""
                logger.error(
                    "plugin '%s'%s: its wrap_generation hook raised serving model '%s': %s: %s",
                    impl.plugin_name,
                    origin,
                    context.model_id,
                    type(error).__name__,
                    error,
                    exc_info=error,
                )
                raise PluginError(impl.plugin_name, error, model_id=context.model_id) from error
            if wrapper is not None:
                result.append((impl.plugin_name, wrapper))
        return result

    def has_wrappers(self) -> bool:
        return bool(self.pm.hook.wrap_generation.get_hookimpls())

    async def startup(self, app: FastAPI, settings: Settings) -> None:
        for impl in reversed(self.pm.hook.startup.get_hookimpls()):
            try:
                result = impl.function(**_kwargs(impl, app=app, settings=settings))
                if inspect.isawaitable(result):
                    await result
            except Exception as error:
                record = self.records.get(impl.plugin_name) or PluginRecord(impl.plugin_name, impl.plugin_name)
                self.records[impl.plugin_name] = record
                record.status, record.error = "failed", f"startup: {type(error).__name__}: {error}"
                message = f"plugin '{impl.plugin_name}' failed in its startup hook: {record.error}"
                if self.strict:
                    raise PluginLoadError(message + " (HEYLOOK_STRICT_PLUGINS is set)") from error
                logger.error("%s; its hooks are turned off", message)
                self.pm.unregister(impl.plugin)
                continue
            self._started.append(impl.plugin_name)

    async def shutdown(self, app: FastAPI) -> None:
        impls = {impl.plugin_name: impl for impl in self.pm.hook.shutdown.get_hookimpls()}
        started = [name for name in reversed(self._started)]
        for name in started + [n for n in reversed(list(impls)) if n not in self._started]:
            impl = impls.get(name)
            if impl is None:
                continue
            try:
                result = impl.function(**_kwargs(impl, app=app))
                if inspect.isawaitable(result):
                    await result
            except Exception:
                logger.exception("plugin '%s': shutdown hook raised", name)
        self._started.clear()

    def register_routes(self, router: APIRouter) -> None:
        self.pm.hook.register_routes(router=router)

    def register_commands(self, cli: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
        for impl in reversed(self.pm.hook.register_commands.get_hookimpls()):
            try:
                impl.function(**_kwargs(impl, cli=cli))
            except Exception as error:
                record = self.records.get(impl.plugin_name)
                if record is not None:
                    record.status, record.error = "failed", f"register_commands: {type(error).__name__}: {error}"
                logger.error("plugin '%s': register_commands raised: %s", impl.plugin_name, error)

    def failed_models(self) -> list[dict[str, str]]:
        """Offered models their provider refused, each named with its plugin and distribution."""
        return [
            {"plugin": record.name, "distribution": record.origin, **failure}
            for record in self.records.values()
            for failure in record.failed_models
        ]

    def report(self, *, verbose: bool = False) -> dict[str, Any]:
        return {
            "plugins": [record.to_dict(verbose=verbose) for record in self.records.values()],
            "failed_models": self.failed_models(),
            "fatal": list(self.fatal),
            "providers": {name: spec.plugin for name, spec in sorted(self.providers.items())},
            "python": python_environment(),
        }


def _kwargs(impl: pluggy.HookImpl, **available: Any) -> dict[str, Any]:
    return {name: available[name] for name in impl.argnames}


def _import(module: str) -> object:
    import importlib

    return importlib.import_module(module)


def _with_plugin(spec: ProviderSpec, plugin: str) -> ProviderSpec:
    from dataclasses import replace

    return replace(spec, plugin=plugin)
