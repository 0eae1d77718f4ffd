"""The router's TTL override (Ollama's keep_alive) and unloading an idle model on request."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from pathlib import Path

import pytest

from heylook_core.router import Router
from heylook_core.runner import CancelToken
from heylook_core.server import build_server
from heylook_core.types import ChatRequest


@pytest.fixture
def make_router(write_config: Callable[[str], Path]) -> Callable[[str], Router]:
    def make(text: str) -> Router:
        return build_server(write_config(text)).router

    return make


def models(*entries: str) -> str:
    return "".join(
        f'[[models]]\nid = "{name}"\nprovider = "echo"\n{extra}' for name, extra in (e.split("|") for e in entries)
    )


async def chat(router: Router, name: str) -> None:
    request = ChatRequest(messages=[{"role": "user", "content": "hi"}])
    async with router.acquire(router.resolve(name)) as provider:
        async for _ in provider.chat(request, CancelToken()):
            pass


async def test_an_override_sets_and_clears_the_idle_ttl(make_router: Callable[[str], Router]) -> None:
    router = make_router(models("a|", "b|ttl_seconds = 600\n"))
    a, b = router.resolve("a"), router.resolve("b")
    assert a.ttl is None and b.ttl == 600
    router.set_ttl(a, 0.1)  # no TTL was configured: the idle timer starts now
    assert router._ttl_task is not None
    await chat(router, "a")
    await asyncio.sleep(1.3)
    assert a.state == "unloaded"
    router.set_ttl(b, math.inf)  # kept loaded
    await chat(router, "b")
    b.last_used -= 10_000
    assert await router.expire_idle() == [] and b.state == "loaded"
    router.set_ttl(b, None)  # back to ttl_seconds
    assert b.ttl == 600
    await router.close()


async def test_unload_idle_leaves_busy_and_pinned_models(make_router: Callable[[str], Router]) -> None:
    router = make_router(models("a|", "p|pinned = true\n"))
    await chat(router, "a")
    await chat(router, "p")
    pinned = router.resolve("p")
    assert not await router.unload_idle(pinned) and pinned.state == "loaded"
    slot = router.resolve("a")
    slot.in_flight += 1  # a request is running
    assert not await router.unload_idle(slot) and slot.state == "loaded"
    slot.in_flight -= 1
    assert await router.unload_idle(slot) and slot.state == "unloaded"
    await router.close()
