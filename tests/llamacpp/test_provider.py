"""The provider in-process: cancellation stops the engine within a few tokens."""

from __future__ import annotations

from pathlib import Path

import pytest

from heylook_core import CancelToken
from heylook_core.types import ChatRequest
from heylook_llamacpp.config import LlamaCppConfig
from heylook_llamacpp.provider import LlamaCppProvider

pytestmark = pytest.mark.slow


async def test_cancel_stops_generation_within_a_few_tokens(gguf: Path) -> None:
    provider = LlamaCppProvider("gemma", LlamaCppConfig(model_path=str(gguf), chat_format="gemma", n_ctx=1024))
    await provider.load()
    try:
        request = ChatRequest(
            messages=[{"role": "user", "content": "Tell me a long story."}], max_tokens=500, temperature=0.8
        )
        cancel = CancelToken()
        received = 0
        stream = provider.chat(request, cancel)
        async for delta in stream:
            if delta.text:
                received += 1
            if received == 3:
                cancel.cancel()
                break
        await stream.aclose()
        await provider.worker.call(lambda: None)  # the worker is free again
        evaluated = provider.llm.n_tokens
        prompt = len(
            provider.llm.tokenize(
                b"<start_of_turn>user\nTell me a long story.<end_of_turn>\n<start_of_turn>model\n", special=True
            )
        )
        assert evaluated - prompt <= received + 4
        request = ChatRequest(messages=[{"role": "user", "content": "Hi"}], max_tokens=2, temperature=0)
        deltas = [delta async for delta in provider.chat(request, CancelToken())]
        assert deltas[-1].usage.completion_tokens == 2
    finally:
        await provider.unload()
