"""Plugin discovery, isolation and hook calls.

Plugins are distributions that declare an entry point in the ``heylook`` group; the entry point names a module
(or object) whose functions carry ``@hookimpl``. :class:`PluginHost` loads them one at a time: a plugin whose import,
contract check or registration raises is recorded as failed and blocked (``pm.set_blocked``) while the rest load;
in strict mode (``HEYLOOK_STRICT_PLUGINS=1``) that is a startup error instead.

Every hook is called by pluggy, through ``pm.hook``: arguments by name, call order (``tryfirst`` / ``trylast``),
hook wrappers (``wrapper=True``) and ``firstresult`` hooks are pluggy's. The registration hooks
(``register_providers``, ``register_models``) run as each plugin registers, and ``startup`` / ``shutdown`` one
plugin at a time, each through a hook caller that holds that plugin alone (``pm.subset_hook_caller``): what they
register and whether they started belongs to that plugin. The other hooks are one call for every plugin
(:meth:`PluginHost.call`); a plugin that raises in one is named (the innermost of its hook implementations in the
traceback), blocked and recorded as failed, and the plugins that had not run yet are called through a subset hook
caller without it. ``wrap_generation`` fails that request instead (closed), naming the plugin.

Environment knobs:

* ``HEYLOOK_LOAD_PLUGINS``: comma-separated entry-point names to load (set but empty: load none);
* ``HEYLOOK_DISABLE_PLUGINS``: names to skip (blocked, never imported);
* ``HEYLOOK_STRICT_PLUGINS=1``: fail on any plugin error;
* ``HEYLOOK_TRACE_PLUGINS=1``: pluggy's trace of every hook call (arguments and results), logged at debug level.

A plugin declares the contract versions it supports with a module (or object) attribute,
``HEYLOOK_CONTRACT = ">=1,<2"`` (a :mod:`packaging.specifiers` range); one whose range excludes
:data:`~heylook_core.hookspecs.CONTRACT_VERSION` fails before any of its hooks is registered.

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
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from functools import partial
from importlib import metadata
from types import CodeType
from typing import TYPE_CHECKING, Any

import pluggy
from packaging.specifiers import InvalidSpecifier, SpecifierSet

from heylook_core import hookspecs
from heylook_core.errors import HeylookError, PluginError, PluginLoadError
from heylook_core.hookspecs import CONTRACT_VERSION

if TYPE_CHECKING:
    import argparse

    from fastapi import APIRouter, FastAPI

    from heylook_core.config import ModelEntry, Settings
    from heylook_core.middleware import GenerationContext, GenerationRequest, Wrapper
    from heylook_core.providers import ProviderSpec

logger = logging.getLogger(__name__)

GROUP = "heylook"
BUILTIN_PLUGINS = ("heylook_core.commands",)
CONTRACT_ATTRIBUTE = "HEYLOOK_CONTRACT"
# What a plugin that declares no range is taken to need: the contract it was written against, since the first
# versioned contract (1.0.0) is the one plugins had before they could declare a range.
ASSUMED_CONTRACT = ">=1,<2"


@dataclass
class PluginRecord:
    """What ``heylookllm plugins`` and ``GET /-/plugins`` report for one plugin."""

    name: str
    module: str
    distribution: str | None = None
    version: str | None = None
    status: str = "loaded"  # loaded | failed | disabled
    builtin: bool = False
    contract: str | None = None  # the HEYLOOK_CONTRACT range the plugin declares (None: it declares none)
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


class _ProviderClash(PluginLoadError):
    """Two plugins register one provider name: it stops a server whether or not strict mode is on."""


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
    """Loads plugins, keeps their records, and calls their hooks through pluggy with each plugin isolated."""

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
        self.providers: dict[str, ProviderSpec[Any]] = {}
        self.offered_models: list[ModelEntry] = []
        self._extra = list(extra_plugins)
        self._entry_points = entry_points
        self._load = load if load is not None else _env_list("HEYLOOK_LOAD_PLUGINS")
        self._disable = disable if disable is not None else (_env_list("HEYLOOK_DISABLE_PLUGINS") or set())
        self.strict = strict if strict is not None else _env_flag("HEYLOOK_STRICT_PLUGINS")
        if trace if trace is not None else _env_flag("HEYLOOK_TRACE_PLUGINS"):
            self.pm.trace.root.setwriter(_trace_writer)
            self.pm.enable_tracing()
        self._started: list[str] = []
        self._defer_fatal = defer_fatal
        self.fatal: list[str] = []
        self._offered_by: dict[int, str] = {}  # id(ModelEntry) -> the plugin that offered it

    # -- loading ---------------------------------------------------------------------------------------------------

    def load(self) -> PluginHost:
        """Load built-ins, entry points and extra plugins; raise :class:`PluginLoadError` on fatal problems."""
        for module_name in BUILTIN_PLUGINS:
            self._load_one(module_name.rsplit(".", 1)[-1], module_name, partial(_import, module_name), builtin=True)
        if self._entry_points:
            for ep in sorted(metadata.entry_points(group=GROUP), key=lambda e: e.name):
                dist = getattr(ep, "dist", None)
                record_dist = (dist.name if dist else None, dist.version if dist else None)
                if (self._load is not None and ep.name not in self._load) or ep.name in self._disable:
                    self.records[ep.name] = PluginRecord(
                        ep.name, ep.value, *record_dist, status="disabled", error="not selected by environment"
                    )
                    self.pm.set_blocked(ep.name)
                    continue
                self._load_one(ep.name, ep.value, ep.load, dist=record_dist)
        for name, plugin in self._extra:
            module = getattr(plugin, "__name__", type(plugin).__name__)
            self._load_one(name, module, partial(_given, plugin), installed=False)
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

    def _check_contract(self, plugin: object, record: PluginRecord, *, installed: bool) -> None:
        """Refuse a plugin whose declared contract range excludes this core's, before any hook is registered.

        An installed plugin (an entry point) that declares no range is taken to need ``ASSUMED_CONTRACT``, with a
        warning; one handed over in code (``extra_plugins``) that declares none is the caller's and accepted."""
        declared = getattr(plugin, CONTRACT_ATTRIBUTE, None)
        if declared is not None and not isinstance(declared, str):
            raise PluginLoadError(f"{CONTRACT_ATTRIBUTE} must be a version range such as '>=1,<2', not {declared!r}")
        record.contract = declared
        try:
            supported = SpecifierSet(declared if declared is not None else ASSUMED_CONTRACT)
        except InvalidSpecifier as error:
            raise PluginLoadError(
                f"{CONTRACT_ATTRIBUTE} = {declared!r} is not a version range (write one such as '>=1,<2')"
            ) from error
        if declared is None and not installed:
            return
        if declared is None:
            warning = (
                f"declares no {CONTRACT_ATTRIBUTE} (the heylook plugin contract versions it supports), so it is "
                f"taken to need '{ASSUMED_CONTRACT}'; add {CONTRACT_ATTRIBUTE} = \"{ASSUMED_CONTRACT}\" to its module"
            )
            record.warnings.append(warning)
            logger.warning("plugin '%s' (%s): %s", record.name, record.origin, warning)
        if supported.contains(CONTRACT_VERSION, prereleases=True):
            return
        from heylook_core import __version__

        needs = f"'{declared}'" if declared is not None else f"'{ASSUMED_CONTRACT}' (it declares no range)"
        major = CONTRACT_VERSION.split(".", 1)[0]
        raise PluginLoadError(
            f"it needs heylook plugin contract {needs}, and this heylook-core {__version__} offers contract "
            f"{CONTRACT_VERSION}: install a version of {record.distribution or record.module} made for contract "
            f"{major}, or a heylook-core whose contract is in its range"
        )

    def _load_one(
        self,
        name: str,
        module: str,
        loader: Callable[[], object],
        *,
        dist: tuple[str | None, str | None] = (None, None),
        builtin: bool = False,
        installed: bool = True,
    ) -> None:
        record = PluginRecord(name, module, dist[0], dist[1], builtin=builtin)
        self.records[name] = record
        start = time.perf_counter()
        plugin: object | None = None
        try:
            plugin = loader()
            # before registering: a plugin made for another contract is never half-loaded
            self._check_contract(plugin, record, installed=installed)
            if self.pm.is_registered(plugin) or self.pm.has_plugin(name) or self.pm.is_blocked(name):
                raise PluginLoadError(f"plugin '{name}' is registered twice")
            self.pm.register(plugin, name=name)
            record.hooks = sorted(caller.name for caller in self.pm.get_hookcallers(plugin) or [])
            try:
                self.pm.check_pending()  # unknown hook names are errors, unless marked optionalhook
            except pluggy.PluginValidationError as error:
                raise PluginLoadError(_unknown_hooks(self.pm, name, plugin) or str(error)) from error
            self._hooks_without_marker(plugin, record)
            self._register_from(name, plugin, record)
        except _ProviderClash as error:
            self._fail(record, plugin, error, fatal=True)
        except Exception as error:  # any error from a third-party plugin is isolated
            self._fail(record, plugin, error)
        finally:
            record.load_ms = round((time.perf_counter() - start) * 1000, 3)

    def _fail(self, record: PluginRecord, plugin: object | None, error: BaseException, *, fatal: bool = False) -> None:
        record.status = "failed"
        record.error = f"{type(error).__name__}: {error}"
        record.traceback = "".join(traceback.format_exception(type(error), error, error.__traceback__))
        if self.pm.get_plugin(record.name) in (None, plugin):  # never block another plugin that holds the name
            self.pm.set_blocked(record.name)
        elif plugin is not None and self.pm.is_registered(plugin):
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

        def register_provider(spec: ProviderSpec[Any]) -> None:
            existing = self.providers.get(spec.name)
            if existing is not None:
                first = self.records.get(existing.plugin or "")
                raise _ProviderClash(
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

        self._alone("register_providers", plugin)(register=register_provider)
        self._alone("register_models", plugin)(register=register_model)

    # -- hooks -----------------------------------------------------------------------------------------------------

    def _alone(self, hook: str, plugin: object) -> pluggy.HookCaller:
        """``hook`` as pluggy calls it with ``plugin``'s implementations only."""
        return self.pm.subset_hook_caller(hook, [other for other in self.pm.get_plugins() if other is not plugin])

    def _in_call_order(self, hook: str) -> list[str]:
        """The plugins implementing ``hook``, in pluggy's call order (the most recently registered first)."""
        caller: pluggy.HookCaller = getattr(self.pm.hook, hook)
        return list(dict.fromkeys(impl.plugin_name for impl in reversed(caller.get_hookimpls())))

    def call(self, hook: str, /, **kwargs: Any) -> Any:
        """Call ``hook`` through pluggy for every plugin and return what pluggy returns (a list of results, or the
        first result of a ``firstresult`` hook). A plugin that raises is named, blocked and recorded as failed, and
        the hook is called again, through a subset hook caller, for the plugins that had not run yet."""
        return self._call(hook, kwargs)

    def _call(self, hook: str, kwargs: dict[str, Any], *, defer: bool = False) -> Any:
        caller: pluggy.HookCaller = getattr(self.pm.hook, hook)
        ran: list[object] = []  # plugins whose implementation already ran in this call: not called again
        while True:
            try:
                return caller(**kwargs)
            except Exception as error:
                impls = caller.get_hookimpls()
                culprit = _culprit(error, impls)
                if culprit is None:  # not raised by a plugin's code (a wrong argument): the host's bug
                    raise
                self._turn_off(culprit.plugin_name, hook, error, defer=defer)
                if culprit.wrapper or culprit.hookwrapper:
                    # a hook wrapper failed around the others: whether they ran is unknown, so none runs twice
                    return None if caller.spec is not None and caller.spec.opts.get("firstresult") else []
                plain = [impl for impl in reversed(impls) if not (impl.wrapper or impl.hookwrapper)]
                ran += [impl.plugin for impl in plain[: plain.index(culprit)]]
                caller = self.pm.subset_hook_caller(hook, ran)

    def _turn_off(self, name: str, hook: str, error: BaseException, *, defer: bool = False) -> None:
        """A plugin raised in ``hook``: record it as failed and block it, so that none of its hooks runs again."""
        record = self.records.get(name) or PluginRecord(name, name)
        self.records[name] = record
        record.status, record.error = "failed", f"{hook}: {type(error).__name__}: {error}"
        record.traceback = "".join(traceback.format_exception(type(error), error, error.__traceback__))
        self.pm.set_blocked(name)
        message = f"plugin '{name}' ({record.origin}) raised in its {hook} hook: {type(error).__name__}: {error}"
        logger.debug("plugin '%s' raised in %s", name, hook, exc_info=error)
        if self.strict:
            message += " (HEYLOOK_STRICT_PLUGINS is set)"
            if not defer:
                raise PluginLoadError(message) from error
            self._stop(message, error)
        logger.error("%s; its hooks are turned off, the other plugins go on", message)

    def failed(self) -> list[PluginRecord]:
        return [r for r in self.records.values() if r.status == "failed"]

    def wrappers(self, request: GenerationRequest, context: GenerationContext) -> list[tuple[str, Wrapper]]:
        """Each plugin's wrapper for this generation, as pluggy's call returns them (the first is outermost; a hook
        wrapper may reshape the list), each named by the plugin it came from (:func:`_owners`). A plugin whose hook
        raises fails this request (closed), named; it is not turned off, so a policy plugin's error never lets a
        request past it."""
        caller = self.pm.hook.wrap_generation
        try:
            made: list[Wrapper] = caller(request=request, context=context)
        except HeylookError:
            raise
        except Exception as error:  # the hook itself, not its wrapper, raised: attribute it the same way
            impls = caller.get_hookimpls()
            culprit = _culprit(error, impls)
            name = culprit.plugin_name if culprit is not None else _either(impls)
            record = self.records.get(name)
            origin = f" from {record.distribution} {record.version}" if record and record.distribution else ""
            logger.error(
                "plugin '%s'%s: its wrap_generation hook raised serving model '%s': %s: %s",
                name,
                origin,
                context.model_id,
                type(error).__name__,
                error,
                exc_info=error,
            )
            raise PluginError(name, error, model_id=context.model_id) from error
        if not made:
            return []
        return list(zip(_owners(made, caller.get_hookimpls()), made, strict=True))

    def has_wrappers(self) -> bool:
        return bool(self.pm.hook.wrap_generation.get_hookimpls())

    async def startup(self, app: FastAPI, settings: Settings) -> None:
        """Each plugin's startup in hook call order, awaited where it is a coroutine; one that raises is turned off."""
        for name in self._in_call_order("startup"):
            plugin = self.pm.get_plugin(name)
            if plugin is None:
                continue
            try:
                for result in self._alone("startup", plugin)(app=app, settings=settings):
                    if inspect.isawaitable(result):
                        await result
            except Exception as error:
                self._turn_off(name, "startup", error)
                continue
            self._started.append(name)

    async def shutdown(self, app: FastAPI) -> None:
        """Shutdown hooks in reverse order of startup (then the plugins that had no startup); errors are logged."""
        implementers = self._in_call_order("shutdown")
        started = [name for name in reversed(self._started) if name in implementers]
        for name in started + [name for name in implementers if name not in self._started]:
            plugin = self.pm.get_plugin(name)
            if plugin is None:
                continue
            try:
                for result in self._alone("shutdown", plugin)(app=app):
                    if inspect.isawaitable(result):
                        await result
            except Exception:
                logger.exception("plugin '%s': shutdown hook raised", name)
        self._started.clear()

    def register_routes(self, router: APIRouter) -> None:
        self._call("register_routes", {"router": router})

    def register_commands(self, cli: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
        self._call("register_commands", {"cli": cli}, defer=True)  # `plugins` and `doctor` still run to show it

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
            "contract": CONTRACT_VERSION,
        }


def _trace_writer(message: str) -> None:
    logger.debug("%s", message.rstrip("\n"))


def _unknown_hooks(pm: pluggy.PluginManager, name: str, plugin: object) -> str | None:
    unknown = sorted(
        caller.name
        for caller in pm.get_hookcallers(plugin) or []
        if not caller.has_spec()
        and any(impl.plugin is plugin and not impl.optionalhook for impl in caller.get_hookimpls())
    )
    if not unknown:
        return None
    return (
        f"plugin '{name}' implements unknown hooks: {', '.join(unknown)} (a misspelling? a hook from a later "
        "contract may be marked @hookimpl(optionalhook=True))"
    )


def _codes(function: Callable[..., object]) -> list[CodeType]:
    """The code objects a call of ``function`` runs first: its own and, under decorators, the wrapped one's."""
    codes = []
    for candidate in (function, inspect.unwrap(function)):
        code = getattr(getattr(candidate, "__func__", candidate), "__code__", None)
        if isinstance(code, CodeType):
            codes.append(code)
    return codes


_DEFINED: dict[int, tuple[object, frozenset[int]]] = {}  # id(function) -> (function, ids of the code it defines)


def _defined_in(function: Callable[..., object]) -> frozenset[int]:
    """The ids of ``function``'s code and of the code of every function defined inside it, at any depth (kept by
    identity, per function: hashing a code object hashes its bytecode)."""
    entry = _DEFINED.get(id(function))
    if entry is None or entry[0] is not function:
        ids: set[int] = set()
        stack = _codes(function)
        while stack:
            inner = stack.pop()
            ids.add(id(inner))
            stack.extend(constant for constant in inner.co_consts if isinstance(constant, CodeType))
        entry = _DEFINED[id(function)] = (function, frozenset(ids))
    return entry[1]


def _culprit(error: BaseException, impls: Sequence[pluggy.HookImpl]) -> pluggy.HookImpl | None:
    """The hook implementation that raised ``error``: the innermost frame of its traceback that runs one of
    ``impls`` (a frame of a method shared by several plugin objects is the one whose ``self`` it is)."""
    frames = []
    tb = error.__traceback__
    while tb is not None:
        frames.append(tb.tb_frame)
        tb = tb.tb_next
    for frame in reversed(frames):
        found = [impl for impl in impls if any(frame.f_code is code for code in _codes(impl.function))]
        if len(found) > 1:
            this = frame.f_locals.get("self")
            found = [impl for impl in found if impl.plugin is this] or found
        if found:
            return found[0]
    return None


def _owners(made: Sequence[object], impls: Sequence[pluggy.HookImpl]) -> list[str]:
    """The plugin each of a hook call's results came from. Where every implementation returned one result and no
    hook wrapper ran, pluggy's list is in call order; otherwise each is named by where its code was defined."""
    if not any(impl.wrapper or impl.hookwrapper for impl in impls) and len(made) == len(impls):
        return [impl.plugin_name for impl in reversed(impls)]
    return [_owner(result, impls) for result in made]


def _owner(made: object, impls: Sequence[pluggy.HookImpl]) -> str:
    """The plugin a hook's result came from: a function defined inside one of its hook implementations (a closure
    over its ``self`` where several objects share one class), the plugin object itself or one of its bound methods,
    or a function of a plugin module; else the candidates' names joined with "or"."""
    target = inspect.unwrap(made) if callable(made) and hasattr(made, "__wrapped__") else made
    code = getattr(getattr(target, "__func__", target), "__code__", None)
    found = [impl for impl in impls if id(code) in _defined_in(impl.function)] if code is not None else []
    if len(found) > 1:
        cells = {id(value) for value in _closure_values(target)}
        found = [impl for impl in found if id(impl.plugin) in cells] or found
    if len({impl.plugin_name for impl in found}) == 1:
        return found[0].plugin_name
    bound = getattr(target, "__self__", None)
    for impl in impls:
        if impl.plugin is made or impl.plugin is target or (bound is not None and impl.plugin is bound):
            return impl.plugin_name
    namespace = getattr(target, "__globals__", None)
    modules = [impl for impl in impls if inspect.ismodule(impl.plugin) and vars(impl.plugin) is namespace]
    if len(modules) == 1:
        return modules[0].plugin_name
    return _either(found or impls)


def _closure_values(function: object) -> list[object]:
    values = []
    for cell in getattr(function, "__closure__", None) or ():
        try:
            values.append(cell.cell_contents)
        except ValueError:  # an empty cell
            continue
    return values


def _either(impls: Sequence[pluggy.HookImpl]) -> str:
    """The plugin among ``impls`` where they are one plugin, else their names joined with "or"."""
    return " or ".join(sorted({impl.plugin_name for impl in impls})) or "?"


def _given(plugin: object) -> object:
    return plugin


def _import(module: str) -> object:
    import importlib

    return importlib.import_module(module)


def _with_plugin(spec: ProviderSpec[Any], plugin: str) -> ProviderSpec[Any]:
    from dataclasses import replace

    return replace(spec, plugin=plugin)
