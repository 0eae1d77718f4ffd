"""The model router: names to models, loading, eviction, concurrency and idle unloading.

* :meth:`Router.resolve` maps a request's ``model`` (id or alias; the default model when absent) to a slot, or
  raises a 404 that lists the available ids.
* :meth:`Router.acquire` admits a request to a model: it is refused with 503 and ``Retry-After`` when the model's
  wait queue is full, loads the model if needed (concurrent first requests share one load), waits for one of the
  model's concurrency slots, and yields the provider.
* At most ``max_loaded_models`` are loaded. To make room, the least recently used model that has no request in
  flight (waiting or running) and is not pinned is unloaded; when every loaded model is busy the load waits.
* A failed load is reported to the requests waiting on it and tried again by the next request.
* Idle models unload after their ``ttl_seconds``, counted from the end of their last request.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import math
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from heylook_core.config import ConfiguredModel, Settings
from heylook_core.errors import HeylookError, ModelLoadError, ModelNotFoundError, ServiceUnavailableError
from heylook_core.providers import Provider

logger = logging.getLogger(__name__)


class ModelSlot:
    """The router's state for one configured model."""

    def __init__(self, model: ConfiguredModel) -> None:
        self.model = model
        self.provider: Provider[Any] | None = None
        self.state = "unloaded"  # unloaded | loading | loaded | unloading | failed (reloaded on the next request)
        self.load_task: asyncio.Task[Provider[Any]] | None = None
        self.unload_task: asyncio.Task[None] | None = None
        self.in_flight = 0
        self.running = 0
        self.semaphore = asyncio.Semaphore(model.concurrency)
        self.last_used = 0.0
        self.last_error: str | None = None
        self.loads = 0
        self.ttl_override: float | None = None  # set by a client (Ollama's keep_alive); math.inf: never unload

    @property
    def id(self) -> str:
        return self.model.id

    @property
    def ttl(self) -> float | None:
        """Idle seconds before unloading: a client's override, else ``ttl_seconds``; ``None`` or ``inf``: never."""
        return self.ttl_override if self.ttl_override is not None else self.model.entry.ttl_seconds

    def status(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "in_flight": self.in_flight,
            "running": self.running,
            "concurrency": self.model.concurrency,
            "last_error": self.last_error,
        }


class _LoadStalled(Exception):
    """A load ran past ``load_timeout_s``: it is reported and no longer waited on."""


def _late_load(model_id: str, provider: Provider[Any], task: asyncio.Future[None]) -> None:
    """A load given up on finished after all: unload what it loaded."""
    if task.cancelled() or task.exception() is not None:
        return
    logger.warning("model '%s' finished loading after its load_timeout_s; unloading it", model_id)
    asyncio.ensure_future(provider.unload())


def _load_failure(error: Exception, provider: str) -> tuple[str, str]:
    """The detail of a load failure (for the log) and its reason class (for the client: no paths, no backend text)."""
    if isinstance(error, _LoadStalled):
        return str(error), str(error)
    if isinstance(error, ModelLoadError):
        return error.reason, "the backend could not load it"
    if isinstance(error, HeylookError):
        return error.message, "the backend could not load it"
    if isinstance(error, ImportError):
        detail = f"{error}; run 'heylookllm doctor' to see what provider '{provider}' needs"
        return detail, f"a library that provider '{provider}' needs is missing (see 'heylookllm doctor')"
    if isinstance(error, MemoryError):
        return f"{type(error).__name__}: {error}", "not enough memory"
    if isinstance(error, OSError):
        return f"{type(error).__name__}: {error}", f"a model file could not be read ({type(error).__name__})"
    return f"{type(error).__name__}: {error}", f"the backend raised {type(error).__name__}"


def _ignore(*args: object) -> None:
    pass


class Router:
    def __init__(self, settings: Settings, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self.clock = clock
        self.slots: dict[str, ModelSlot] = {m.id: ModelSlot(m) for m in settings.models}
        self.names: dict[str, str] = {}
        for model in settings.models:
            self.names[model.id] = model.id
            for alias in model.entry.aliases:
                self.names[alias] = model.id
        self._load_lock = asyncio.Lock()
        self._changed = asyncio.Condition()
        self._ttl_task: asyncio.Task[None] | None = None
        self.observe: Callable[..., None] = _ignore  # (event, model id, seconds): heylook_core.metrics

    # -- lookup ----------------------------------------------------------------------------------------------------

    def resolve(self, name: str | None) -> ModelSlot:
        key = name if name else self.settings.default_model
        if key is None or key not in self.names:
            raise ModelNotFoundError(name or "(default)", list(self.slots))
        return self.slots[self.names[key]]

    def loaded(self) -> list[str]:
        return [slot.id for slot in self.slots.values() if slot.state == "loaded" and not self._broken(slot)]

    def failed(self) -> dict[str, str]:
        """Models whose worker died or wedged, or whose load stalled, with why; each reloads on its next request."""
        for slot in self.slots.values():
            if self._broken(slot):
                self._failed(slot)
        return {slot.id: slot.last_error or "failed" for slot in self.slots.values() if slot.state == "failed"}

    @staticmethod
    def _broken(slot: ModelSlot) -> bool:
        return slot.state == "loaded" and slot.provider is not None and slot.provider.failure is not None

    # -- admission -------------------------------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def acquire(self, slot: ModelSlot) -> AsyncIterator[Provider[Any]]:
        """Admit one request to ``slot``'s model and yield its loaded provider for the request's duration."""
        if slot.model.unavailable:
            raise ServiceUnavailableError(
                f"model '{slot.id}' cannot be served: {slot.model.unavailable}", code="model_unavailable"
            )
        limit = slot.model.concurrency + self.settings.server.max_queue
        if slot.in_flight >= limit:
            raise ServiceUnavailableError(
                f"model '{slot.id}' is busy: {slot.running} running and {slot.in_flight - slot.running} waiting "
                f"(max_queue = {self.settings.server.max_queue}); retry later",
                retry_after=1,
            )
        slot.in_flight += 1
        acquired = False
        try:
            provider = await self._ensure_loaded(slot)
            try:
                await asyncio.wait_for(slot.semaphore.acquire(), self.settings.server.queue_timeout_s)
            except asyncio.TimeoutError:
                raise ServiceUnavailableError(
                    f"model '{slot.id}' is busy: waited {self.settings.server.queue_timeout_s:g} s for a turn",
                    retry_after=5,
                ) from None
            acquired = True
            slot.running += 1
            if slot.provider is not provider:  # unloaded and reloaded while we waited for a turn
                provider = await self._ensure_loaded(slot)
            yield provider
        finally:
            if slot.provider is not None and slot.provider.failure is not None:
                self._failed(slot)
            if acquired:
                slot.running -= 1
                slot.semaphore.release()
            slot.in_flight -= 1
            slot.last_used = self.clock()
            if slot.in_flight == 0:
                await self._notify()

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    # -- loading and unloading -------------------------------------------------------------------------------------

    def _failed(self, slot: ModelSlot) -> None:
        """The loaded model's worker died or wedged: give it up; /health shows it failed until it reloads."""
        provider = slot.provider
        if provider is None or slot.state != "loaded":
            return
        slot.last_error = f"model '{slot.id}' failed: {provider.failure}"
        logger.error("%s; it is reloaded on its next request", slot.last_error)
        slot.provider = None
        slot.state = "failed"
        try:
            provider.abandon()
        except Exception:
            logger.exception("model '%s': abandoning its provider raised", slot.id)

    async def _ensure_loaded(self, slot: ModelSlot) -> Provider[Any]:
        while True:
            if slot.state == "loaded" and slot.provider is not None and slot.provider.failure is not None:
                self._failed(slot)
            if slot.state == "loaded" and slot.provider is not None:
                slot.last_used = self.clock()
                return slot.provider
            if slot.state == "unloading" and slot.unload_task is not None:
                await asyncio.shield(slot.unload_task)
                continue
            if slot.load_task is None:
                slot.state = "loading"
                slot.load_task = asyncio.create_task(self._load(slot), name=f"load-{slot.id}")
            await asyncio.shield(slot.load_task)

    async def ensure_loaded(self, name: str) -> Provider[Any]:
        """Load a model now (``--model-id``, pinned models, the admin load route)."""
        slot = self.resolve(name)
        slot.in_flight += 1
        try:
            return await self._ensure_loaded(slot)
        finally:
            slot.in_flight -= 1
            slot.last_used = self.clock()
            await self._notify()

    async def _load(self, slot: ModelSlot) -> Provider[Any]:
        try:
            async with self._load_lock:
                await self._make_room(slot)
                spec = slot.model.spec
                assert spec is not None
                started = time.perf_counter()
                logger.info("loading model '%s' (provider %s)", slot.id, spec.name)
                timeout = self.settings.server.load_timeout_s
                try:
                    provider_class = spec.factory()
                    provider = provider_class(slot.id, slot.model.config)
                    provider.stall_timeout = self.settings.server.stall_timeout_s
                    loading = asyncio.ensure_future(provider.load())
                    done, _ = await asyncio.wait({loading}, timeout=timeout)
                    if not done:
                        loading.add_done_callback(functools.partial(_late_load, slot.id, provider))
                        raise _LoadStalled(f"it did not finish loading within {timeout:g} s (load_timeout_s)")
                    loading.result()
                except Exception as error:
                    detail, kind = _load_failure(error, spec.name)
                    raise ModelLoadError(slot.id, detail, kind=kind) from error
                self._narrow(slot, provider)
                slot.provider = provider
                slot.state = "loaded"
                slot.last_error = None
                slot.loads += 1
                self.observe("load", slot.id, time.perf_counter() - started)
                slot.last_used = self.clock()
                logger.info("model '%s' loaded in %.2f s", slot.id, time.perf_counter() - started)
                return provider
        except BaseException as error:
            slot.state = "failed" if isinstance(error.__cause__, _LoadStalled) else "unloaded"
            slot.provider = None
            cause = error.__cause__
            if isinstance(error, ModelLoadError):  # the log (and last_error) keep the detail; clients get the kind
                slot.last_error = f"model '{slot.id}' failed to load: {error.reason}"
            else:
                slot.last_error = str(getattr(error, "message", error))
            unexpected = cause is not None and not isinstance(cause, (HeylookError, ImportError))
            logger.error("%s", slot.last_error, exc_info=cause if unexpected else None)
            raise
        finally:
            slot.load_task = None
            await self._notify()

    @staticmethod
    def _narrow(slot: ModelSlot, provider: Provider[Any]) -> None:
        """Take what the loaded model refuses out of its declared parameters (Provider.refused_parameters)."""
        try:
            refused = dict(provider.refused_parameters())
        except Exception:  # a provider bug: the model still serves, with the parameters its spec declares
            logger.exception("model '%s': refused_parameters() failed; its declared parameters stand", slot.id)
            return
        for name in slot.model.refuse(refused):
            logger.info("model '%s' does not honour '%s': %s", slot.id, name, refused[name])

    def _occupied(self, exclude: ModelSlot) -> list[ModelSlot]:
        return [s for s in self.slots.values() if s is not exclude and s.state in ("loaded", "unloading")]

    async def _make_room(self, slot: ModelSlot) -> None:
        deadline = self.clock() + self.settings.server.queue_timeout_s
        while len(self._occupied(slot)) >= self.settings.max_loaded_models:
            occupied = self._occupied(slot)
            idle = [s for s in occupied if s.state == "loaded" and s.in_flight == 0 and not s.model.entry.pinned]
            if idle:
                victim = min(idle, key=lambda s: s.last_used)
                self.observe("evict", victim.id)
                await self.unload(victim)
                continue
            if all(s.model.entry.pinned for s in occupied):
                raise ServiceUnavailableError(
                    f"cannot load model '{slot.id}': max_loaded_models = {self.settings.max_loaded_models} and the "
                    f"loaded models are pinned ({', '.join(s.id for s in occupied)})",
                    retry_after=30,
                )
            remaining = deadline - self.clock()
            if remaining <= 0:
                raise ServiceUnavailableError(
                    f"cannot load model '{slot.id}': every loaded model is busy (max_loaded_models = "
                    f"{self.settings.max_loaded_models})",
                    retry_after=5,
                )
            async with self._changed:
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), min(remaining, 1.0))

    async def unload(self, slot: ModelSlot) -> None:
        """Unload a model now (it must have no request in flight unless the server is stopping)."""
        if slot.state != "loaded" or slot.provider is None:
            return
        provider = slot.provider
        slot.state = "unloading"

        async def run() -> None:
            try:
                await provider.unload()
            except Exception:
                logger.exception("model '%s': unload raised", slot.id)
            finally:
                slot.provider = None
                slot.state = "unloaded"
                slot.unload_task = None
                logger.info("model '%s' unloaded", slot.id)
                await self._notify()

        slot.unload_task = asyncio.create_task(run(), name=f"unload-{slot.id}")
        await asyncio.shield(slot.unload_task)

    # -- reloading -------------------------------------------------------------------------------------------------

    def successor(self, settings: Settings) -> tuple[Router, list[ModelSlot]]:
        """A router for new settings that keeps the slots (and loaded models) of unchanged entries.

        Returns the new router and the old slots it dropped; the caller unloads those once their requests finish.
        """
        new = Router(settings, clock=self.clock)
        new.observe = self.observe
        for model_id, slot in list(new.slots.items()):
            previous = self.slots.get(model_id)
            if previous is not None and previous.model.entry == slot.model.entry:
                new.slots[model_id] = previous
        dropped = [slot for model_id, slot in self.slots.items() if new.slots.get(model_id) is not slot]
        return new, dropped

    async def retire(self, slots: list[ModelSlot]) -> None:
        """Unload dropped slots as soon as each has no request in flight."""
        for slot in slots:
            while slot.in_flight or slot.state == "loading":
                await asyncio.sleep(0.05)
            await self.unload(slot)

    # -- idle unloading and shutdown -------------------------------------------------------------------------------

    async def expire_idle(self) -> list[str]:
        """Unload models idle longer than their TTL; returns their ids."""
        now = self.clock()
        expired = []
        for slot in list(self.slots.values()):
            ttl = slot.ttl
            if ttl is None or math.isinf(ttl) or slot.model.entry.pinned or slot.state != "loaded" or slot.in_flight:
                continue
            if now - slot.last_used >= ttl:
                await self.unload(slot)
                expired.append(slot.id)
        return expired

    def set_ttl(self, slot: ModelSlot, seconds: float | None) -> None:
        """Override ``slot``'s idle TTL (``math.inf`` keeps it loaded; ``None`` restores ``ttl_seconds``)."""
        slot.ttl_override = seconds
        if self._ttl_task is None and seconds is not None and not math.isinf(seconds):
            self.start()

    async def unload_idle(self, slot: ModelSlot) -> bool:
        """Unload ``slot`` now unless it has requests in flight or is pinned; whether it is unloaded."""
        if slot.in_flight or slot.model.entry.pinned:
            return False
        await self.unload(slot)
        return slot.state == "unloaded"

    def start(self, interval: float = 1.0) -> None:
        if self._ttl_task is not None:
            return
        if any(s.ttl and not math.isinf(s.ttl) for s in self.slots.values()):

            async def loop() -> None:
                while True:
                    await asyncio.sleep(interval)
                    try:
                        await self.expire_idle()
                    except Exception:
                        logger.exception("idle unloading failed")

            self._ttl_task = asyncio.create_task(loop(), name="heylook-ttl")

    async def stop_timers(self) -> None:
        if self._ttl_task is not None:
            self._ttl_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ttl_task
            self._ttl_task = None

    async def close(self) -> None:
        await self.stop_timers()
        for slot in self.slots.values():
            if slot.load_task is not None:
                with contextlib.suppress(BaseException):
                    await slot.load_task
            await self.unload(slot)
