"""The model worker thread, streaming back-pressure and cancellation; the SSE pump's pings."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator

import pytest

from heylook_core.runner import CancelToken, ModelWorker, WorkerStoppedError
from heylook_core.streaming import PrimedStream, is_ping, ready_groups


async def test_every_call_runs_on_the_same_thread() -> None:
    worker = ModelWorker("m")
    seen = set()

    def where() -> int:
        seen.add(threading.get_ident())
        return threading.get_ident()

    def gen() -> Iterator[int]:
        for _ in range(3):
            yield where()

    await worker.call(where)
    items = [item async for item in worker.stream(gen)]
    await asyncio.gather(*(worker.call(where) for _ in range(5)))
    assert len(seen) == 1 and items[0] == worker.thread.ident != threading.get_ident()
    worker.stop()
    with pytest.raises(WorkerStoppedError):
        await worker.call(where)


async def test_errors_cross_to_the_caller() -> None:
    worker = ModelWorker("m")

    def fail() -> None:
        raise ValueError("engine said no")

    with pytest.raises(ValueError, match="engine said no"):
        await worker.call(fail)

    def fail_midway() -> Iterator[int]:
        yield 1
        raise RuntimeError("mid")

    got = []
    with pytest.raises(RuntimeError, match="mid"):
        async for item in worker.stream(fail_midway):
            got.append(item)
    assert got == [1]
    assert await worker.call(lambda: 42) == 42  # the thread survived
    worker.stop()


async def test_slow_consumer_applies_back_pressure() -> None:
    worker = ModelWorker("m", buffer_size=4)
    produced = []

    def gen() -> Iterator[int]:
        for i in range(100):
            produced.append(i)
            yield i

    stream = worker.stream(gen)
    assert await stream.__anext__() == 0
    await asyncio.sleep(0.2)
    assert len(produced) <= 4 + 2  # the producer waits for the consumer
    rest = [item async for item in stream]
    assert rest == list(range(1, 100))
    worker.stop()


async def test_cancel_stops_the_generator_on_its_thread() -> None:
    worker = ModelWorker("m")
    cancel = CancelToken()
    closed = threading.Event()
    produced = []

    def gen() -> Iterator[int]:
        try:
            for i in range(1000):
                if cancel.cancelled:
                    return
                time.sleep(0.01)
                produced.append(i)
                yield i
        finally:
            closed.set()

    stream = worker.stream(gen, cancel)
    await stream.__anext__()
    await stream.__anext__()
    await stream.aclose()  # the client went away
    assert cancel.cancelled
    await asyncio.get_running_loop().run_in_executor(None, closed.wait, 2)
    assert closed.is_set() and len(produced) < 20
    assert await worker.call(lambda: "free") == "free"  # the next job runs at once
    worker.stop()


async def test_each_item_is_read_when_it_comes() -> None:
    worker = ModelWorker("m")
    produced: dict[int, float] = {}

    def gen() -> Iterator[int]:
        for i in range(5):
            time.sleep(0.1)
            produced[i] = time.monotonic()
            yield i

    delays = sorted([time.monotonic() - produced[item] async for item in worker.stream(gen)])
    assert delays[len(delays) // 2] < 0.05  # not held back for others
    worker.stop()


async def test_primed_stream_pings_until_the_first_item() -> None:
    async def slow() -> object:
        await asyncio.sleep(0.35)
        yield "token"
        yield "next"

    stream = PrimedStream(slow(), ping_interval=0.1)
    assert await stream.wait_first(0.05) is False
    items = [item async for item in stream]
    await stream.close()
    assert items[-2:] == ["token", "next"]
    assert sum(1 for item in items if is_ping(item)) >= 2


async def test_primed_stream_reports_an_early_error() -> None:
    async def failing() -> object:
        raise ValueError("before the first token")
        yield  # pragma: no cover

    stream = PrimedStream(failing())
    with pytest.raises(ValueError, match="before the first token"):
        await stream.wait_first(1)
    await stream.close()


async def test_items_that_are_ready_come_in_one_group() -> None:
    gate = asyncio.Event()

    async def source() -> object:
        for item in "abc":
            yield item
        await gate.wait()
        for item in "de":
            yield item

    groups = ready_groups(source())
    assert await groups.__anext__() == ["a", "b", "c"]  # handed on before the source waits
    waiting = asyncio.ensure_future(groups.__anext__())
    await asyncio.sleep(0.05)
    assert not waiting.done()
    gate.set()
    assert await waiting == ["d", "e"]
    with pytest.raises(StopAsyncIteration):
        await groups.__anext__()


async def test_a_group_is_delivered_before_the_error_that_follows_it() -> None:
    async def source() -> object:
        yield 1
        yield 2
        raise ValueError("engine failed")

    got = []
    with pytest.raises(ValueError, match="engine failed"):
        async for group in ready_groups(source()):
            got.append(group)
    assert got == [[1, 2]]


async def test_closing_the_groups_while_the_source_waits_runs_its_cleanup() -> None:
    cleaned = asyncio.Event()

    async def source() -> object:
        try:
            yield "first"
            await asyncio.sleep(3600)
            yield "never"
        finally:
            await asyncio.sleep(0)  # a cleanup that awaits, as a stream's does
            cleaned.set()

    groups = ready_groups(source())
    assert await groups.__anext__() == ["first"]
    waiting = asyncio.ensure_future(groups.__anext__())
    await asyncio.sleep(0.05)
    waiting.cancel()  # the response task is cancelled while the source waits: the source sees it where it waits
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert cleaned.is_set()

    cleaned.clear()

    async def parked() -> object:
        try:
            yield "one"
            yield "two"
            await asyncio.sleep(3600)  # where it waits when the consumer goes away
            yield "never"
        finally:
            await asyncio.sleep(0)
            cleaned.set()

    groups = ready_groups(parked())
    assert await groups.__anext__() == ["one", "two"]
    await groups.aclose()  # (a response's body iterator closed after a client went away)
    assert cleaned.is_set()
