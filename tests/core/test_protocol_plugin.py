"""A third-party wire protocol from a plugin: the example in docs/plugins.md, run as written."""

from __future__ import annotations

import re
import types
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from heylook_core import Delta, GenerationContext, hookimpl

ROOT = Path(__file__).resolve().parents[2]


def documented_protocol() -> types.ModuleType:
    docs = (ROOT / "docs" / "plugins.md").read_text(encoding="utf-8")
    match = re.search(r"<!-- protocol-example -->\n```python\n(.*?)```", docs, re.S)
    assert match, "docs/plugins.md lost its protocol example"
    module = types.ModuleType("plain_protocol")
    exec(compile(match.group(1), "docs/plugins.md", "exec"), module.__dict__)  # noqa: S102
    return module


class Watch:
    def __init__(self) -> None:
        self.seen: list[tuple[str, str, str]] = []

    @hookimpl
    def wrap_generation(self, request: Any, context: GenerationContext) -> Any:
        self.seen.append((context.protocol, context.route, context.endpoint))

        async def wrapper(request: Any, call_next: Any) -> AsyncIterator[Delta]:
            async for delta in call_next(request):
                yield delta

        return wrapper


def test_the_documented_protocol_serves_and_middleware_sees_it(make_client: Any) -> None:
    watch = Watch()
    client = make_client(plugins=[("plain", documented_protocol()), ("watch", watch)])
    reply = client.post("/-/plain/generate", json={"model": "echo", "prompt": "plain words here"})
    assert reply.status_code == 200
    assert reply.headers["content-type"].startswith("text/plain")
    assert reply.text == "plain words here"
    assert watch.seen == [("plain", "/-/plain/generate", "chat")]


def test_the_documented_protocol_reports_errors_in_its_own_shape(make_client: Any) -> None:
    client = make_client(plugins=[("plain", documented_protocol())])
    reply = client.post("/-/plain/generate", json={"model": "nothing", "prompt": "x"})
    assert reply.status_code == 404
    assert reply.text.startswith("error: model 'nothing' not found")


def test_every_protocol_reaches_middleware_with_its_name(make_client: Any) -> None:
    watch = Watch()
    client = make_client(plugins=[("watch", watch)])
    client.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "x"}]})
    client.post("/v1/completions", json={"prompt": "x"})
    client.post("/v1/responses", json={"input": "x", "store": False})
    assert watch.seen == [
        ("openai", "/v1/chat/completions", "chat"),
        ("openai", "/v1/completions", "completion"),
        ("openai-responses", "/v1/responses", "chat"),
    ]
