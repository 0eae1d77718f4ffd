"""The OpenAI-compatible routes that do not generate text: models, embeddings, hidden states, tokenize.

The generating routes are protocol adapters on the generation service: :mod:`heylook_core.protocols`.
"""

from __future__ import annotations

import base64
import struct
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response

from heylook_core.errors import BadRequestError, UnsupportedError
from heylook_core.parameters import Parameter
from heylook_core.providers import Capability
from heylook_core.security import require_api_key
from heylook_core.types import EmbeddingRequest, HiddenStatesRequest, TokenizeRequest

if TYPE_CHECKING:
    from heylook_core.router import ModelSlot
    from heylook_core.server import Server

v1 = APIRouter(prefix="/v1", dependencies=[Depends(require_api_key)])


def server_of(request: Request) -> Server:
    server: Server = request.app.state.heylook
    return server


@v1.post("/embeddings")
async def embeddings(body: EmbeddingRequest, http: Request) -> Response:
    server = server_of(http)
    slot = server.router.resolve(body.model)
    model = slot.model
    if Capability.EMBEDDINGS not in model.capabilities:
        raise UnsupportedError(
            model.id,
            "embeddings",
            param="model",
            hint=f"its capabilities: {', '.join(sorted(c.value for c in model.capabilities))}",
        )
    if body.has_token_ids() and not model.entry.embedding_token_ids:
        raise BadRequestError(
            f"model '{model.id}' takes its embedding input as text, not token ids: token ids are only read as "
            "this model's own vocabulary when its [[models]] entry sets embedding_token_ids = true. Clients that "
            "send token arrays usually send OpenAI's tiktoken ids, which would give wrong vectors; with "
            "LangChain's OpenAIEmbeddings pass check_embedding_ctx_length=False to send text",
            param="input",
            code="token_ids_not_accepted",
        )
    if body.dimensions is not None and Parameter.DIMENSIONS not in model.parameters:
        raise UnsupportedError(model.id, "the parameter 'dimensions'", param="dimensions")
    inputs = body.inputs()
    async with server.router.acquire(slot) as provider:
        result = await provider.embed(body, inputs)
    data = []
    for index, vector in enumerate(result.vectors):
        if body.encoding_format == "base64":
            encoded: Any = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")
        else:
            encoded = [float(v) for v in vector]
        data.append({"object": "embedding", "index": index, "embedding": encoded})
    return JSONResponse(
        {
            "object": "list",
            "data": data,
            "model": body.model or slot.id,
            "usage": {"prompt_tokens": result.prompt_tokens, "total_tokens": result.prompt_tokens},
        }
    )


@v1.post("/hidden_states")
async def hidden_states(body: HiddenStatesRequest, http: Request) -> Response:
    server = server_of(http)
    slot = server.router.resolve(body.model)
    if Capability.HIDDEN_STATES not in slot.model.capabilities:
        raise UnsupportedError(slot.id, "hidden states", param="model")
    async with server.router.acquire(slot) as provider:
        results = await provider.hidden_states(body)
    states: list[Any] = []
    for item in results:
        if body.encoding_format == "base64":
            states.append(base64.b64encode(item.data).decode("ascii"))
        else:
            rows, width = item.shape
            flat = struct.unpack(f"<{rows * width}f", item.data)
            states.append([list(flat[i * width : (i + 1) * width]) for i in range(rows)])
    return JSONResponse(
        {
            "object": "list",
            "model": body.model or slot.id,
            "layer": results[0].layer if results else body.layer,
            "dtype": results[0].dtype if results else "float32",
            "encoding_format": body.encoding_format,
            "shape": [list(item.shape) for item in results],
            "hidden_states": states,
        }
    )


@v1.post("/tokenize")
async def tokenize(body: TokenizeRequest, http: Request) -> Response:
    server = server_of(http)
    slot = server.router.resolve(body.model)
    if Capability.TOKENIZE not in slot.model.capabilities:
        raise UnsupportedError(slot.id, "tokenize", param="model")
    async with server.router.acquire(slot) as provider:
        tokens = await provider.tokenize(body.input, body.add_special_tokens)
    return JSONResponse({"object": "tokens", "model": body.model or slot.id, "tokens": tokens, "count": len(tokens)})


def model_card(server: Server, slot: ModelSlot) -> dict[str, Any]:
    entry = slot.model.entry
    card: dict[str, Any] = {
        "id": slot.id,
        "object": "model",
        "created": server.started,
        "owned_by": entry.owned_by,
        "provider": entry.provider,
        "aliases": entry.aliases,
        "capabilities": sorted(c.value for c in slot.model.capabilities),
        "parameters": sorted(slot.model.parameters),
        "concurrency": slot.model.concurrency,  # requests the model runs at once
        "loaded": slot.state == "loaded",
        "state": slot.state,
        "pinned": entry.pinned,
        "description": entry.description,
        # what Anthropic's clients read from a model (its models.list()); OpenAI clients ignore them
        "type": "model",
        "display_name": slot.id,
        "created_at": datetime.fromtimestamp(server.started, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    if slot.model.unavailable:
        card["unavailable"] = slot.model.unavailable
    if slot.provider is not None:
        card.update(slot.provider.info())
    return card


@v1.get("/models")
async def list_models(http: Request) -> dict[str, Any]:
    server = server_of(http)
    data = [model_card(server, slot) for slot in server.router.slots.values()]
    return {"object": "list", "data": data, "has_more": False}  # has_more: Anthropic's pager stops on it


@v1.get("/models/{model_id:path}")
async def get_model(model_id: str, http: Request) -> dict[str, Any]:
    server = server_of(http)
    if model_id.endswith("/") and model_id.rstrip("/") in server.router.names:
        model_id = model_id.rstrip("/")  # /v1/models/{id}/ is the same model
    if not model_id:
        raise BadRequestError("the model id is empty: GET /v1/models lists the models", param="model")
    return model_card(server, server.router.resolve(model_id))
