"""The router: names, LRU eviction, pinning, single loads, failures, queues, TTL and races."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from heylook_core.errors import ModelLoadError, ModelNotFoundError, ServiceUnavailableError
from heylook_core.router import Router
from heylook_core.runner import CancelToken
from heylook_core.server import build_server
from heylook_core.types import ChatRequest


def model(id: str, **config: Any) -> str:
    lines = [f'[[models]]\nid = "{id}"\nprovider = "echo"\n']
    extra = config.pop("entry", "")
    lines.append(extra)
    if config:
        lines.append("[models.config]\n")
        lines += [f"{k} = {v!r}\n".replace("'", '"') for k, v in config.items()]
    return "".join(lines)


@pytest.fixture
def make_router(write_config: Callable[[str], Path]) -> Callable[[str], Router]:
    def make(text: str) -> Router:
        return build_server(write_config(text)).router

    return make


async def chat(router: Router, name: str, text: str = "hi", **params: Any) -> str:
    slot = router.resolve(name)
    request = ChatRequest(messages=[{"role": "user", "content": text}], **params)
    async with router.acquire(slot) as provider:
        return "".join([d.text async for d in provider.chat(request, CancelToken())])


async def test_resolve_ids_aliases_default_and_unknown(make_router: Callable[[str], Router]) -> None:
    router = make_router('default_model = "b"\n' + model("a", entry='aliases = ["first"]\n') + model("b"))
    assert router.resolve("a").id == "a"
    assert router.resolve("first").id == "a"
    assert router.resolve(None).id == "b"
    with pytest.raises(ModelNotFoundError) as caught:
        router.resolve("c")
    assert caught.value.available == ["a", "b"]


async def test_lru_eviction_with_max_one(make_router: Callable[[str], Router]) -> None:
    router = make_router("max_loaded_models = 1\n" + model("a") + model("b"))
    assert await chat(router, "a") == "hi"
    assert router.loaded() == ["a"]
    await chat(router, "b")
    assert router.loaded() == ["b"]
    await chat(router, "a")
    assert router.loaded() == ["a"]
    assert router.resolve("a").loads == 2
    await router.close()


async def test_lru_picks_least_recently_used(make_router: Callable[[str], Router]) -> None:
    router = make_router("max_loaded_models = 2\n" + model("a") + model("b") + model("c"))
    await chat(router, "a")
    await chat(router, "b")
    await chat(router, "a")  # b is now the least recently used
    await chat(router, "c")
    assert sorted(router.loaded()) == ["a", "c"]
    await router.close()


async def test_pinned_model_is_never_evicted(make_router: Callable[[str], Router]) -> None:
    router = make_router("max_loaded_models = 2\n" + model("p", entry="pinned = true\n") + model("a") + model("b"))
    await chat(router, "p")
    await chat(router, "a")
    await chat(router, "b")
    assert sorted(router.loaded()) == ["b", "p"]
    await router.close()


async def test_all_pinned_refuses_clearly(make_router: Callable[[str], Router]) -> None:
    router = make_router("max_loaded_models = 1\n" + model("p", entry="pinned = true\n") + model("a"))
    await chat(router, "p")
    with pytest.raises(ServiceUnavailableError, match="pinned"):
        await chat(router, "a")
    await router.close()


async def test_concurrent_first_requests_share_one_load(make_router: Callable[[str], Router]) -> None:
    router = make_router(model("a", load_delay_ms=200, concurrency=4))
    results = await asyncio.gather(*(chat(router, "a", f"n{i}") for i in range(4)))
    assert results == ["n0", "n1", "n2", "n3"]
    assert router.resolve("a").loads == 1
    await router.close()


async def test_load_failure_reported_to_all_waiters_then_retried(
    make_router: Callable[[str], Router], write_config: Callable[[str], Path]
) -> None:
    router = make_router(model("bad", fail_load="no weights", load_delay_ms=50) + model("good"))
    results = await asyncio.gather(*(chat(router, "bad") for _ in range(3)), return_exceptions=True)
    assert all(isinstance(r, ModelLoadError) and "no weights" in r.reason for r in results)
    # clients see the model and a reason class, not the backend's text (which may hold file paths)
    assert all("'bad'" in r.message and "RuntimeError" in r.message and "no weights" not in r.message for r in results)
    assert router.resolve("bad").state == "unloaded"
    assert "no weights" in (router.resolve("bad").last_error or "")
    assert await chat(router, "good") == "hi"
    # the next request tries again (and fails again, but it did try)
    with pytest.raises(ModelLoadError):
        await chat(router, "bad")
    await router.close()


async def test_in_flight_model_is_not_evicted_and_other_load_waits(make_router: Callable[[str], Router]) -> None:
    router = make_router("max_loaded_models = 1\n" + model("a", token_delay_ms=20) + model("b"))
    long_a = asyncio.create_task(chat(router, "a", "w " * 10))
    await asyncio.sleep(0.05)
    assert router.loaded() == ["a"]
    b = asyncio.create_task(chat(router, "b"))
    await asyncio.sleep(0.05)
    assert not b.done() and router.loaded() == ["a"]  # b waits: a is busy
    assert (await long_a).startswith("w w")
    assert await b == "hi"
    assert router.loaded() == ["b"]
    await router.close()


async def test_two_models_max_one_interleaved(make_router: Callable[[str], Router]) -> None:
    router = make_router("max_loaded_models = 1\n" + model("a", token_delay_ms=2) + model("b", token_delay_ms=2))
    names = ["a", "b"] * 6
    results = await asyncio.gather(*(chat(router, n, f"{n}{i}") for i, n in enumerate(names)))
    assert results == [f"{n}{i}" for i, n in enumerate(names)]
    assert len(router.loaded()) == 1
    assert all(slot.in_flight == 0 and slot.running == 0 for slot in router.slots.values())
    await router.close()


async def test_queue_full_is_503_with_retry_after(make_router: Callable[[str], Router]) -> None:
    router = make_router("[server]\nmax_queue = 1\n" + model("a", token_delay_ms=30))
    running = asyncio.create_task(chat(router, "a", "x y z"))
    await asyncio.sleep(0.05)
    waiting = asyncio.create_task(chat(router, "a", "q"))
    await asyncio.sleep(0.01)
    with pytest.raises(ServiceUnavailableError) as caught:
        await chat(router, "a")
    assert caught.value.status_code == 503
    assert caught.value.headers["Retry-After"] == "1"
    assert await running == "x y z" and await waiting == "q"
    await router.close()


async def test_concurrency_limit_runs_one_at_a_time(make_router: Callable[[str], Router]) -> None:
    router = make_router(model("a", token_delay_ms=10))
    peak = 0

    async def watch() -> None:
        nonlocal peak
        for _ in range(50):
            peak = max(peak, router.resolve("a").running)
            await asyncio.sleep(0.005)

    await asyncio.gather(watch(), *(chat(router, "a", "a b c") for _ in range(3)))
    assert peak == 1
    await router.close()


async def test_idle_ttl_unloads(make_router: Callable[[str], Router]) -> None:
    router = make_router(model("a", entry="ttl_seconds = 0.2\n") + model("b"))
    await chat(router, "a")
    await chat(router, "b")
    assert await router.expire_idle() == []
    await asyncio.sleep(0.25)
    assert await router.expire_idle() == ["a"]
    assert router.loaded() == ["b"]  # b has no TTL
    router.start(interval=0.05)
    await chat(router, "a")
    await asyncio.sleep(0.4)
    assert router.loaded() == ["b"]
    await router.close()
