"""The speech-to-text routes: ``POST /v1/audio/transcriptions`` and ``POST /v1/audio/translations`` (multipart).

The upload is decoded (:mod:`heylook_core.audio`) into 16 kHz mono float32 before the model's provider sees it,
under the server's limits (``max_body_bytes``: 413, ``max_audio_seconds``: 400). The model must list the
``transcription`` (or ``translation``) capability; ``temperature`` and word timestamps need the ``temperature``
and ``word_timestamps`` parameters in its spec. The provider transcribes the whole clip (long audio included) and
the route formats the result.
"""

from __future__ import annotations

import asyncio
from typing import Literal

from fastapi import APIRouter, Depends, File, Form, Request, UploadFile
from fastapi.responses import Response

from heylook_core.audio import decode_audio, format_transcription
from heylook_core.errors import UnsupportedError
from heylook_core.parameters import Parameter
from heylook_core.providers import Capability
from heylook_core.security import require_api_key
from heylook_core.types import MAX_MODEL_NAME, Granularity, TranscriptionRequest

audio_router = APIRouter(prefix="/v1", dependencies=[Depends(require_api_key)])

ResponseFormat = Literal["json", "text", "srt", "verbose_json", "vtt"]


async def _transcribe(
    http: Request,
    file: UploadFile,
    request: TranscriptionRequest,
    capability: Capability,
) -> Response:
    server = http.app.state.heylook
    slot = server.router.resolve(request.model)
    model = slot.model
    if capability not in model.capabilities:
        what = "audio transcription" if capability is Capability.TRANSCRIPTION else "audio translation"
        raise UnsupportedError(
            model.id,
            f"{what} ('{capability.value}')",
            param="model",
            hint=f"its capabilities: {', '.join(sorted(c.value for c in model.capabilities)) or 'none'}",
        )
    if request.temperature is not None and Parameter.TEMPERATURE not in model.parameters:
        raise UnsupportedError(model.id, "the parameter 'temperature'", param="temperature", hint="remove it")
    if "word" in request.timestamp_granularities and Parameter.WORD_TIMESTAMPS not in model.parameters:
        raise UnsupportedError(
            model.id, "word timestamps", param="timestamp_granularities[]", hint="ask for 'segment' granularity only"
        )
    data = await file.read()
    audio = await asyncio.to_thread(
        decode_audio,
        data,
        filename=file.filename or "file",
        max_seconds=server.settings.server.max_audio_seconds,
    )
    async with server.router.acquire(slot) as provider:
        result = await provider.transcribe(audio, request)
    body, media_type = format_transcription(result, request)
    return Response(content=body, media_type=media_type)


@audio_router.post("/audio/transcriptions")
async def transcriptions(
    http: Request,
    file: UploadFile = File(..., description="the audio: wav, flac, mp3, ogg, m4a, webm, ..."),
    model: str | None = Form(None, max_length=MAX_MODEL_NAME),
    language: str | None = Form(None, max_length=32, description="ISO-639-1 code of the spoken language"),
    prompt: str | None = Form(None, max_length=10_000),
    response_format: ResponseFormat = Form("json"),
    temperature: float | None = Form(None, ge=0.0, le=1.0),
    timestamp_granularities: list[Granularity] | None = Form(None, alias="timestamp_granularities[]"),
) -> Response:
    request = TranscriptionRequest(
        model=model or None,  # an empty form field is "not set"
        language=language or None,
        prompt=prompt or None,
        response_format=response_format,
        temperature=temperature,
        timestamp_granularities=timestamp_granularities or ["segment"],
        task="transcribe",
    )
    return await _transcribe(http, file, request, Capability.TRANSCRIPTION)


@audio_router.post("/audio/translations")
async def translations(
    http: Request,
    file: UploadFile = File(..., description="the audio: wav, flac, mp3, ogg, m4a, webm, ..."),
    model: str | None = Form(None, max_length=MAX_MODEL_NAME),
    prompt: str | None = Form(None, max_length=10_000),
    response_format: ResponseFormat = Form("json"),
    temperature: float | None = Form(None, ge=0.0, le=1.0),
) -> Response:
    """Speech in any language the model knows, transcribed into English."""
    request = TranscriptionRequest(
        model=model or None,  # an empty form field is "not set"
        prompt=prompt or None,
        response_format=response_format,
        temperature=temperature,
        task="translate",
    )
    return await _transcribe(http, file, request, Capability.TRANSLATION)
