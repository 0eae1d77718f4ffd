"""The baseline for bench/overhead.py: a bare FastAPI app that answers the same shapes with no heylook in between."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse

app = FastAPI()


@app.post("/v1/chat/completions")
async def chat(request: Request) -> Any:
    body = await request.json()
    text = body["messages"][-1]["content"]
    words = text.split(" ")
    max_tokens = body.get("max_tokens") or len(words)
    tokens = [w if i == 0 else " " + w for i, w in enumerate(words)] + [" lorem"] * max(0, max_tokens - len(words))
    tokens = tokens[:max_tokens]
    cid = "chatcmpl-" + uuid.uuid4().hex
    created = int(time.time())
    if not body.get("stream"):
        return JSONResponse(
            {
                "id": cid,
                "object": "chat.completion",
                "created": created,
                "model": body.get("model"),
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": "".join(tokens)},
                        "logprobs": None,
                        "finish_reason": "length",
                    }
                ],
                "usage": {"prompt_tokens": 4, "completion_tokens": len(tokens), "total_tokens": 4 + len(tokens)},
            }
        )

    async def events() -> AsyncIterator[bytes]:
        for token in tokens:
            chunk = {
                "id": cid,
                "object": "chat.completion.chunk",
                "created": created,
                "model": body.get("model"),
                "choices": [{"index": 0, "delta": {"content": token}, "logprobs": None, "finish_reason": None}],
            }
            yield f"data: {json.dumps(chunk)}\n\n".encode()
        yield b"data: [DONE]\n\n"

    return StreamingResponse(events(), media_type="text/event-stream")
