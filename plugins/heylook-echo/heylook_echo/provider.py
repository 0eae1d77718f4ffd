"""The echo engine: deterministic output derived from the request.

A real in-process engine would load weights in ``load_sync`` and generate in ``chat_sync``; the shape of this class
is what such a provider looks like. Tokens here are whitespace-led words (``" hello"``), with ids from a CRC32.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import struct
import time
import zlib
from collections.abc import Iterator

from heylook_core import (
    AudioInput,
    BadRequestError,
    BatchChatRequest,
    CancelToken,
    ChatRequest,
    ChatResult,
    CompletionRequest,
    Delta,
    EmbeddingRequest,
    EmbeddingResult,
    HiddenStates,
    HiddenStatesRequest,
    ProviderError,
    Segment,
    ThreadedProvider,
    TokenLogprob,
    TopLogprob,
    Transcription,
    TranscriptionRequest,
    Usage,
)
from heylook_echo.config import EchoConfig

_TOKEN = re.compile(r"\s*\S+|\s+")


def split_tokens(text: str) -> list[str]:
    return _TOKEN.findall(text)


BOS = 1  # the id tokenize_sync puts first with add_special_tokens; a text completion prompt counts it too


def token_id(token: str) -> int:
    return zlib.crc32(token.encode("utf-8")) % 50_000


class EchoProvider(ThreadedProvider[EchoConfig]):
    def __init__(self, model_id: str, config: EchoConfig) -> None:
        super().__init__(model_id, config)
        self.vocabulary: dict[int, str] = {BOS: ""}  # the tokens tokenize_sync has seen, to read token-id prompts

    def load_sync(self) -> None:
        if self.config.load_delay_ms:
            time.sleep(self.config.load_delay_ms / 1000)
        if self.config.fail_load:
            raise RuntimeError(self.config.fail_load)

    def unload_sync(self) -> None:
        pass

    def refused_parameters(self) -> dict[str, str]:
        return dict(self.config.refuse)

    def info(self) -> dict[str, object]:
        return {
            "context_length": self.config.context_length,
            "embedding_dimensions": self.config.embedding_dim,
            "embedding_normalized": True,
        }

    # -- generation ------------------------------------------------------------------------------------------------

    def _generate(
        self, reply: list[str], prompt_tokens: int, request: ChatRequest | CompletionRequest, cancel: CancelToken
    ) -> Iterator[Delta]:
        if prompt_tokens > self.config.context_length:
            raise BadRequestError(
                f"the prompt has {prompt_tokens} tokens, more than model '{self.model_id}''s context of "
                f"{self.config.context_length}",
                param="messages",
                code="context_length_exceeded",
            )
        room = self.config.context_length - prompt_tokens
        if request.max_tokens is None:
            tokens, finish = reply[:room], ("stop" if len(reply) <= room else "length")
        else:
            limit = min(request.max_tokens, room)
            tokens = (reply + [self.config.filler] * max(0, limit - len(reply)))[:limit]
            finish = "length"
        want_logprobs = bool(getattr(request, "logprobs", None))
        top: int = (
            getattr(request, "top_logprobs", None)
            or (request.logprobs if isinstance(request, CompletionRequest) else None)
            or 0
        )
        delay = self.config.token_delay_ms / 1000
        produced = 0
        for token in tokens:
            if cancel.cancelled:  # the client went away, or the core reached a stop sequence: end with the usage
                finish = "stop"
                break
            if delay:
                time.sleep(delay)
            produced += 1
            logprobs = None
            if want_logprobs:
                raw = list(token.encode("utf-8"))
                alternatives = [TopLogprob(token, 0.0, raw)] + [
                    TopLogprob(f"<alt{rank}>", -50.0 - rank, list(f"<alt{rank}>".encode())) for rank in range(1, top)
                ]
                logprobs = [TokenLogprob(token, 0.0, raw, alternatives if top else [])]
            yield Delta(text=token, logprobs=logprobs)
        # Stop sequences are the core's: it cuts the text and tells the engine to stop through ``cancel``.
        yield Delta(finish_reason=finish, usage=Usage(prompt_tokens, produced))

    def chat_sync(self, request: ChatRequest, cancel: CancelToken) -> Iterator[Delta]:
        last = next((m for m in reversed(request.messages) if m.role == "user"), request.messages[-1])
        text = last.text()
        if text.startswith("!error"):
            raise ProviderError(f"echo model '{self.model_id}': scripted failure")
        prompt_tokens = sum(len(split_tokens(m.text())) + 2 for m in request.messages)
        images = sum(len(m.images()) for m in request.messages)
        if images:
            text = f"[{images} image{'s' if images > 1 else ''}] {text}"
        if request.response_format is not None and request.response_format.type != "text":
            text = json.dumps({"echo": text})
        if request.messages[-1].role == "tool":  # a tool's result: answer with it, as a model would
            text = f"the tool said: {request.messages[-1].text()}"
        elif request.tools and request.tool_choice != "none" and not self.config.tool_text:
            yield from self._tool_call(request, text, prompt_tokens)
            return
        if request.enable_thinking:
            text = f"<think>The user wrote {len(split_tokens(text))} words.</think>{text}"
        stream = self._generate(split_tokens(text), prompt_tokens, request, cancel)
        if text.startswith("!midstream-error"):
            yield next(stream)
            raise ProviderError(f"echo model '{self.model_id}': scripted failure after the first token")
        yield from stream

    def _tool_call(self, request: ChatRequest, text: str, prompt_tokens: int) -> Iterator[Delta]:
        assert request.tools
        name = request.tools[0].function.name
        if isinstance(request.tool_choice, dict):
            name = request.tool_choice.get("function", {}).get("name", name)
        arguments = json.dumps({"text": text})
        call_id = "call_" + hashlib.sha256(arguments.encode()).hexdigest()[:12]
        yield Delta(
            tool_calls=[{"index": 0, "id": call_id, "type": "function", "function": {"name": name, "arguments": ""}}]
        )
        for piece in (arguments[: len(arguments) // 2], arguments[len(arguments) // 2 :]):
            yield Delta(tool_calls=[{"index": 0, "function": {"arguments": piece}}])
        yield Delta(finish_reason="tool_calls", usage=Usage(prompt_tokens, len(split_tokens(arguments))))

    def complete_sync(
        self, request: CompletionRequest, prompt: str | list[int], cancel: CancelToken
    ) -> Iterator[Delta]:
        if isinstance(prompt, str):  # tokenized as tokenize_sync does by default: the BOS, then the words
            text, prompt_tokens = prompt, len(split_tokens(prompt)) + 1
        else:  # ids tokenize_sync gave are read back; others stand for themselves
            parts: list[str] = []
            for token in prompt:
                known = self.vocabulary.get(token)
                parts.append(known if known is not None else f"{' ' if any(parts) else ''}{token}")
            text, prompt_tokens = "".join(parts), len(prompt)
        reply = split_tokens(text)
        if request.echo:
            yield Delta(text=text)
        yield from self._generate(reply, prompt_tokens, request, cancel)

    def batch_chat_sync(self, request: BatchChatRequest, cancel: CancelToken) -> list[ChatResult]:
        results = []
        for item in request.requests:
            result = ChatResult()
            text = []
            for delta in self.chat_sync(item, cancel):
                text.append(delta.text)
                if delta.finish_reason:
                    result.finish_reason = delta.finish_reason
                    result.usage = delta.usage or Usage()
            result.text = "".join(text)
            results.append(result)
        return results

    # -- vectors ---------------------------------------------------------------------------------------------------

    @staticmethod
    def _unit_vector(seed: bytes, size: int) -> list[float]:
        values: list[float] = []
        counter = 0
        while len(values) < size:
            digest = hashlib.sha256(seed + counter.to_bytes(4, "little")).digest()
            values.extend((b - 127.5) / 127.5 for b in digest)
            counter += 1
        values = values[:size]
        norm = math.sqrt(sum(v * v for v in values)) or 1.0
        return [v / norm for v in values]

    def embed_sync(self, request: EmbeddingRequest, inputs: list[str] | list[list[int]]) -> EmbeddingResult:
        vectors = []
        tokens = 0
        for item in inputs:
            key = item if isinstance(item, str) else " ".join(map(str, item))
            tokens += len(split_tokens(key)) if isinstance(item, str) else len(item)
            vectors.append(self._unit_vector(key.encode("utf-8"), self.config.embedding_dim))
        return EmbeddingResult(vectors, tokens)

    def hidden_states_sync(self, request: HiddenStatesRequest) -> list[HiddenStates]:
        layers = self.config.num_layers
        if not -layers <= request.layer < layers:
            raise BadRequestError(
                f"model '{self.model_id}' has layers 0..{layers - 1} (or -{layers}..-1); got {request.layer}",
                param="layer",
            )
        layer = request.layer % layers
        result = []
        for text in request.inputs():
            tokens = split_tokens(text)[: request.max_length]
            rows = b"".join(
                struct.pack(
                    f"<{self.config.hidden_size}f", *self._unit_vector(f"{layer}:{t}".encode(), self.config.hidden_size)
                )
                for t in tokens
            )
            result.append(HiddenStates(rows, (len(tokens), self.config.hidden_size), layer))
        return result

    def tokenize_sync(self, text: str, add_special_tokens: bool) -> list[int]:
        tokens = split_tokens(text)
        ids = [token_id(t) for t in tokens]
        self.vocabulary.update(zip(ids, tokens, strict=True))
        return [BOS, *ids] if add_special_tokens else ids

    def transcribe_sync(self, audio: AudioInput, request: TranscriptionRequest) -> Transcription:
        duration = audio.duration
        segments: list[Segment] = []
        start = 0.0
        while start < duration or not segments:
            end = min(duration, start + 30.0)
            segments.append(Segment(len(segments), start, end, f" audio from {start:.1f} to {end:.1f} seconds"))
            start = end
            if end >= duration:
                break
        text = "".join(s.text for s in segments).strip()
        return Transcription(text=text, language=request.language or "en", duration=duration, segments=segments)
