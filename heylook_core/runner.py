"""Running blocking engines: one worker thread per loaded model.

In-process engines (llama.cpp, MLX) block while they compute and are not safe to use from two threads at once; MLX
even requires that every call for a model happens on the thread that created it. :class:`ModelWorker` owns one
such thread for the life of a loaded model: :meth:`ModelWorker.call` runs a function there and awaits its result,
:meth:`ModelWorker.stream` runs a generator there and hands its items to the event loop through a bounded buffer,
so a slow client applies back-pressure instead of piling tokens up in memory. Items cross without a lock or a
wake-up per item (see :class:`_Handoff`).

A :class:`CancelToken` is the other direction: the core sets it when the client goes away, and the generator checks
``cancel.cancelled`` between tokens and stops.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import math
import queue
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, TypeVar

from heylook_core.errors import ProviderError

logger = logging.getLogger(__name__)

WATCH_INTERVAL_S = 1.0  # how often a waiting request checks that its worker thread is alive and moving

T = TypeVar("T")

_DONE = object()


class CancelToken:
    """A flag set from the event loop and read from a worker thread (or an async provider).

    Providers check :attr:`cancelled` between tokens and, once it is set, stop generating and end with their last
    delta (``finish_reason`` and ``usage``). Two things set it: :meth:`cancel`, when the client has gone (nobody
    reads what follows, and a worker thread abandons the generator at its next item), and :meth:`stop`, when the
    core has what it needs (a stop sequence was reached) and waits for that last delta.
    """

    __slots__ = ("_event", "_gone")

    def __init__(self) -> None:
        self._event = threading.Event()
        self._gone = threading.Event()

    def cancel(self) -> None:
        """The consumer is gone: stop, and nothing more is read."""
        self._gone.set()
        self._event.set()

    def stop(self) -> None:
        """Stop generating now and end with the last delta, which is still read."""
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    @property
    def gone(self) -> bool:
        return self._gone.is_set()


class WorkerStoppedError(RuntimeError):
    """The model's worker thread was stopped (the model was unloaded) before the call ran."""


class WorkerFailedError(ProviderError):
    """The model's worker thread died or wedged: the request fails (502) and the router reloads the model."""

    default_code = "worker_failed"


class ModelWorker:
    """A dedicated thread that owns one model; every call for that model runs on it, one at a time."""

    def __init__(self, name: str, *, buffer_size: int = 64, stall_timeout: float | None = None) -> None:
        """``stall_timeout``: seconds a stream may go without an item before the worker counts as wedged."""
        self.name = name
        self.buffer_size = buffer_size
        self.stall_timeout = stall_timeout
        self.failure: str | None = None  # why the worker is unusable (died, wedged); the router reloads the model
        self._jobs: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name=f"heylook-model-{name}", daemon=True)
        self._stopped = False
        self._thread.start()

    @property
    def thread(self) -> threading.Thread:
        return self._thread

    def _run(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            try:
                job()
            except BaseException:  # a job reports its own errors; this only guards the thread
                logger.exception("model worker %s: job raised", self.name)

    def _submit(self, job: Callable[[], None]) -> None:
        if self._stopped:
            raise WorkerStoppedError(f"the worker for model '{self.name}' is stopped")
        self._check()
        self._jobs.put(job)

    def _check(self) -> None:
        """Raise :class:`WorkerFailedError` when the thread has died or wedged."""
        if self.failure is None and not self._stopped and not self._thread.is_alive():
            self.failure = "its worker thread ended unexpectedly"
            logger.error("model '%s': %s; the next request reloads it", self.name, self.failure)
        if self.failure is not None:
            raise WorkerFailedError(f"model '{self.name}' failed: {self.failure}; the next request reloads it")

    def _wedged(self, idle: float) -> None:
        if self.failure is None:
            self.failure = f"its worker produced nothing for {idle:.0f} s (stall_timeout_s); it is wedged"
            logger.error("model '%s': %s; the next request reloads it", self.name, self.failure)
        self._check()

    async def _watch(self, settle: Callable[[BaseException], None], last: list[float] | None = None) -> None:
        """Until cancelled: hand ``settle`` the error once the thread dies, fails or (``last``: the time of the
        last item) stalls past ``stall_timeout``."""
        while True:
            await asyncio.sleep(WATCH_INTERVAL_S)
            try:
                self._check()
                if last is not None and self.stall_timeout is not None:
                    idle = time.monotonic() - last[0]
                    if idle > self.stall_timeout:
                        self._wedged(idle)
            except WorkerFailedError as error:
                settle(error)
                return

    async def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run ``fn(*args, **kwargs)`` on the worker thread and return its result (or raise its exception)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()

        def settle(result: Any, error: BaseException | None) -> None:
            if future.cancelled():
                return
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(result)

        def job() -> None:
            try:
                result = fn(*args, **kwargs)
            except BaseException as error:  # handed to the awaiting coroutine
                loop.call_soon_threadsafe(settle, None, error)
            else:
                loop.call_soon_threadsafe(settle, result, None)

        self._submit(job)
        watch = asyncio.create_task(self._watch(lambda error: settle(None, error)))
        try:
            return await future
        finally:
            watch.cancel()

    async def stream(
        self, make_iterator: Callable[[], Iterator[T]], cancel: CancelToken | None = None
    ) -> AsyncIterator[T]:
        """Run the generator that ``make_iterator()`` returns on the worker thread and yield its items here.

        At most ``buffer_size`` items wait between the threads. When the consumer stops early (client gone, an
        exception), ``cancel`` is set and the generator is closed on its own thread at its next item.

        Per item the worker appends to a deque; it wakes the event loop only when the consumer is waiting for an
        item, so tokens that come faster than the consumer reads cost one wake-up per burst, not one each (see
        :class:`_Handoff`).
        """
        loop = asyncio.get_running_loop()
        handoff = _Handoff(loop, self.buffer_size)
        token = cancel or CancelToken()

        def job() -> None:
            iterator: Iterator[T] | None = None
            put, items, size = handoff.put, handoff.items, handoff.size
            try:
                iterator = make_iterator()
                for item in iterator:
                    if len(items) >= size and not handoff.room(token):
                        return
                    put(item)
                    if token.gone:
                        return
                put(_DONE)
            except BaseException as error:  # handed to the consumer
                put(_Raised(error))
            finally:
                close = getattr(iterator, "close", None)
                if close is not None:
                    try:
                        close()
                    except Exception:
                        logger.exception("model worker %s: closing a stream raised", self.name)

        self._submit(job)
        last = [math.inf]  # when the consumer began waiting for the next item (inf: it is not waiting)
        watch = asyncio.create_task(self._watch(lambda error: handoff.put(_Raised(error)), last))
        items = handoff.items
        try:
            while True:
                if not items:
                    last[0] = time.monotonic()
                    while not items:
                        await handoff.wait()
                    last[0] = math.inf
                item = items.popleft()
                if handoff.full:
                    handoff.space.set()
                if item is _DONE:
                    return
                if type(item) is _Raised:
                    raise item.error
                yield item
        finally:
            watch.cancel()
            token.cancel()
            handoff.space.set()  # a worker waiting for room sees the consumer gone at once

    def abandon(self) -> None:
        """Give the worker up without waiting for it (it died or wedged); its thread is a daemon."""
        self._stopped = True
        self._jobs.put(None)

    def stop(self, timeout: float | None = 30.0) -> None:
        """Let queued jobs finish, then end the thread."""
        if self._stopped:
            return
        self._stopped = True
        self._jobs.put(None)
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout)


class _Handoff:
    """Items from a worker thread to the event loop: a deque, and a wake-up only while the consumer waits.

    Appending to and popping from a deque are atomic, so neither side takes a lock per item. The consumer registers
    a future in ``waiters`` before it checks the deque a last time and sleeps; the worker, after appending, pops that
    future (if any) and wakes it through ``call_soon_threadsafe``. Whichever order the two threads run in, an item
    never waits unseen, and a wake-up for a future nobody awaits any more is harmless.

    The consumer is woken for each item it waits for, in step with the worker. Reading on a timer instead (groups
    of items every few milliseconds) cost fewer wake-ups but was slower on an MLX model: the worker and MLX's own
    thread then spent more CPU per token than the event loop saved.
    """

    __slots__ = ("full", "items", "loop", "size", "space", "waiters")

    def __init__(self, loop: asyncio.AbstractEventLoop, size: int) -> None:
        self.items: collections.deque[Any] = collections.deque()
        self.loop = loop
        self.size = size
        self.waiters: list[asyncio.Future[None]] = []  # the consumer's future while it waits (at most one)
        self.space = threading.Event()  # set by the consumer when it takes an item from a full buffer
        self.full = False  # the worker waits for room

    def put(self, item: Any) -> None:
        """Append ``item`` (from any thread) and wake the consumer if it waits."""
        self.items.append(item)
        if self.waiters:
            try:
                waiter = self.waiters.pop()
            except IndexError:  # the consumer took it back: it saw the item itself
                return
            self.loop.call_soon_threadsafe(_wake, waiter)

    def room(self, token: CancelToken) -> bool:
        """On the worker, with the buffer full: wait for room; False when the consumer has gone."""
        items, size = self.items, self.size
        while len(items) >= size:
            self.space.clear()
            self.full = True
            if len(items) < size:  # taken between the check and the flag
                break
            self.space.wait(0.05)
            if token.gone:
                self.full = False
                return False
        self.full = False
        return True

    async def wait(self) -> None:
        """On the event loop: until the deque has an item."""
        waiter = self.loop.create_future()
        self.waiters.append(waiter)
        try:
            if self.items:  # appended before the worker could see the waiter
                return
            await waiter
        finally:
            with contextlib.suppress(ValueError):
                self.waiters.remove(waiter)


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


class _Raised:
    __slots__ = ("error",)

    def __init__(self, error: BaseException) -> None:
        self.error = error
