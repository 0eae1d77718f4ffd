"""The llama-server provider: forwards requests to a supervised llama-server or to remote upstreams.

Requests go to the upstream's OpenAI endpoints (``/v1/chat/completions``, ``/v1/completions``,
``/v1/embeddings``) and to llama-server's ``/tokenize``. Streams are read as raw bytes, split into SSE lines, and
each chunk's delta becomes one :class:`~heylook_core.types.Delta`; nothing else is built per token. When the client
goes away the core cancels the stream, which closes the upstream connection, and llama-server frees the slot.

Remote mode (``url`` / ``urls``) starts nothing: each request goes to the healthy upstream with the fewest requests
outstanding; a background task checks every upstream's health, and an upstream that refuses a connection is
marked down and the request tried on the next one.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx

from heylook_core import (
    BadRequestError,
    CancelToken,
    ChatRequest,
    CompletionRequest,
    Delta,
    EmbeddingRequest,
    EmbeddingResult,
    HeylookError,
    ModelLoadError,
    NotFoundError,
    Parameter,
    ParameterGroup,
    Provider,
    ProviderError,
    ServiceUnavailableError,
    TokenLogprob,
    TopLogprob,
    Usage,
)
from heylook_llama_server.binary import INSTALL_HINT, find_binary
from heylook_llama_server.config import LlamaServerConfig
from heylook_llama_server.supervisor import Supervisor

logger = logging.getLogger(__name__)

_loads = json.loads
# sent under the core's names (repetition_penalty goes as llama-server's repeat_penalty)
_SAMPLING = tuple(sorted(name.value for name in ParameterGroup.SAMPLING - {Parameter.REPETITION_PENALTY}))


@dataclass
class Upstream:
    """One server requests go to, with what the balancer and ``/v1/models`` need to know about it."""

    url: str
    outstanding: int = 0
    healthy: bool = True
    last_error: str | None = None
    served: int = 0

    def report(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "healthy": self.healthy,
            "outstanding": self.outstanding,
            "served": self.served,
            "last_error": self.last_error,
        }


def _error_message(body: bytes) -> str:
    try:
        data = _loads(body)
    except ValueError:
        return body.decode("utf-8", "replace").strip()[:500] or "(empty body)"
    error = data.get("error", data) if isinstance(data, dict) else data
    if isinstance(error, dict):
        return str(error.get("message") or error)
    return str(error)


def translate_error(status: int, message: str, model_id: str) -> HeylookError:
    """An upstream error status as heylook's error (400s stay the client's, the rest are the backend's)."""
    if status in (400, 422):
        return BadRequestError(message)
    if status == 404:
        return NotFoundError(message)
    if status == 501:
        return BadRequestError(f"model '{model_id}': {message}", code="unsupported")
    if status == 503:
        return ServiceUnavailableError(f"model '{model_id}' upstream is busy or loading: {message}", retry_after=1)
    return ProviderError(f"model '{model_id}': upstream answered {status}: {message}")


def _logprobs(data: Any) -> list[TokenLogprob] | None:
    """OpenAI chat-style ``{"content": [...]}`` logprobs (llama-server uses them for completions too)."""
    if not data:
        return None
    items = data.get("content") if isinstance(data, dict) else None
    if items is None:
        return None
    return [
        TokenLogprob(
            token=item.get("token", ""),
            logprob=float(item.get("logprob", 0.0)),
            bytes=item.get("bytes"),
            top_logprobs=[
                TopLogprob(top.get("token", ""), float(top.get("logprob", 0.0)), top.get("bytes"))
                for top in item.get("top_logprobs") or []
            ],
        )
        for item in items
    ]


def _hang_up(response: httpx.Response) -> None:
    """Shut the upstream connection of an unfinished stream down now, so that llama-server frees the slot.

    ``response.aclose()`` alone was not enough under uvicorn with uvloop: the connection stayed open after the client
    left, and llama-server went on generating into it. A socket shutdown is synchronous, and nothing can skip it.
    """
    network = response.extensions.get("network_stream")
    sock = network.get_extra_info("socket") if network is not None else None
    if sock is None:
        return
    with contextlib.suppress(OSError, ValueError):
        # uvloop hands out a PseudoSocket without shutdown(); a duplicate descriptor reaches the same connection.
        duplicate = socket.socket(sock.family, sock.type, fileno=os.dup(sock.fileno()))
        try:
            duplicate.shutdown(socket.SHUT_RDWR)
        finally:
            duplicate.close()


def _usage(data: dict[str, Any] | None) -> Usage:
    if not data:
        return Usage()
    details = data.get("prompt_tokens_details") or {}
    return Usage(
        prompt_tokens=int(data.get("prompt_tokens") or 0),
        completion_tokens=int(data.get("completion_tokens") or 0),
        cached_tokens=details.get("cached_tokens"),
    )


class LlamaServerProvider(Provider[LlamaServerConfig]):
    def __init__(self, model_id: str, config: LlamaServerConfig) -> None:
        super().__init__(model_id, config)
        self.client: httpx.AsyncClient | None = None
        self.supervisor: Supervisor | None = None
        self.upstreams: list[Upstream] = []
        self._health_task: asyncio.Task[None] | None = None
        self._meta: dict[str, Any] = {}  # llama-server's facts about the model (GET /v1/models: n_embd, ...)

    # -- lifecycle ---------------------------------------------------------------------------------------------

    async def load(self) -> None:
        config = self.config
        timeout = httpx.Timeout(connect=10.0, read=config.request_timeout_s, write=60.0, pool=None)
        limits = httpx.Limits(max_connections=None, max_keepalive_connections=max(16, config.parallel * 2))
        headers = {"Authorization": f"Bearer {config.api_key}"} if config.api_key else None
        self.client = httpx.AsyncClient(timeout=timeout, limits=limits, headers=headers, trust_env=config.remote)
        try:
            if config.remote:
                await self._load_remote()
            else:
                await self._load_local()
            if config.embedding:
                self._meta = await self._read_meta()
        except BaseException:
            await self.unload()
            raise

    async def _load_local(self) -> None:
        config = self.config
        try:
            found = find_binary(config.binary)
        except FileNotFoundError as error:
            raise ModelLoadError(self.model_id, str(error)) from None
        if found is None:
            raise ModelLoadError(self.model_id, f"no llama-server binary found; {INSTALL_HINT}")
        model_path = Path(config.model_path or "").expanduser()
        if not model_path.is_file():
            raise ModelLoadError(self.model_id, f"model_path '{config.model_path}' is not a file")
        if config.chat_template_file and not Path(config.chat_template_file).expanduser().is_file():
            raise ModelLoadError(self.model_id, f"chat_template_file '{config.chat_template_file}' is not a file")
        threads, threads_batch, why = config.threads()
        logger.info(
            "model '%s': llama-server %s (%s) with %d threads, %d for prompt processing (%s)",
            self.model_id,
            found.path,
            found.source,
            threads,
            threads_batch,
            why,
        )
        self.supervisor = Supervisor(
            self.model_id,
            found.path,
            config.server_args(),
            startup_timeout_s=config.startup_timeout_s,
            stop_grace_s=config.stop_grace_s,
            max_restarts=config.max_restarts,
            restart_window_s=config.restart_window_s,
        )
        await self.supervisor.start()
        self.upstreams = [Upstream(self.supervisor.url)]

    async def _load_remote(self) -> None:
        self.upstreams = [Upstream(url) for url in self.config.upstream_urls()]
        await self._check_all()
        if not any(u.healthy for u in self.upstreams):
            listed = "; ".join(f"{u.url}: {u.last_error}" for u in self.upstreams)
            raise ModelLoadError(self.model_id, f"no upstream is healthy ({listed})")
        self._health_task = asyncio.create_task(self._health_loop(), name=f"llama-server-health-{self.model_id}")

    async def unload(self) -> None:
        if self._health_task is not None:
            self._health_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._health_task
            self._health_task = None
        if self.supervisor is not None:
            await self.supervisor.stop()
            self.supervisor = None
        if self.client is not None:
            await self.client.aclose()
            self.client = None

    async def _read_meta(self) -> dict[str, Any]:
        """The ``meta`` llama-server gives for its model in ``GET /v1/models`` (empty where an upstream gives none)."""
        assert self.client is not None
        upstream = await self._pick(set())
        try:
            response = await self.client.get(upstream.url + "/v1/models", timeout=10.0)
            meta = _loads(response.content)["data"][0]["meta"]
        except (httpx.HTTPError, ValueError, KeyError, IndexError, TypeError) as error:
            logger.info("model '%s': no model facts from %s/v1/models (%s)", self.model_id, upstream.url, error)
            return {}
        return meta if isinstance(meta, dict) else {}

    def info(self) -> dict[str, Any]:
        data: dict[str, Any] = {"parallel": self.config.parallel, "context_length": self.config.n_ctx}
        width = self._meta.get("n_embd")
        if self.config.embedding and self.config.pooling != "rank" and isinstance(width, int):
            # one pooled vector per input, normalised (llama-server's /v1/embeddings default, embd_normalize 2)
            data["embedding_dimensions"] = width
            data["embedding_normalized"] = self.config.pooling != "none"
        if self.supervisor is not None:
            data["server"] = {
                "url": self.supervisor.url,
                "pid": self.supervisor.pid,
                "restarts": len(self.supervisor.restarts),
                "failure": self.supervisor.failure,
            }
        elif self.upstreams:
            data["upstreams"] = [u.report() for u in self.upstreams]
        return data

    # -- upstream health (remote mode) -------------------------------------------------------------------------

    async def _check(self, upstream: Upstream) -> None:
        assert self.client is not None
        try:
            response = await self.client.get(upstream.url + self.config.health_path, timeout=3.0)
            ok, reason = response.status_code == 200, f"health answered {response.status_code}"
        except httpx.HTTPError as error:
            ok, reason = False, f"{type(error).__name__}: {error}"
        self._mark(upstream, ok, None if ok else reason)

    def _mark(self, upstream: Upstream, ok: bool, reason: str | None) -> None:
        if ok and not upstream.healthy:
            logger.info("model '%s': upstream %s is back", self.model_id, upstream.url)
        elif not ok and upstream.healthy:
            logger.warning("model '%s': upstream %s is down (%s); skipping it", self.model_id, upstream.url, reason)
        upstream.healthy = ok
        upstream.last_error = reason if not ok else upstream.last_error

    async def _check_all(self) -> None:
        await asyncio.gather(*(self._check(u) for u in self.upstreams))

    async def _health_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.health_interval_s)
            try:
                await self._check_all()
            except Exception:
                logger.exception("model '%s': upstream health check failed", self.model_id)

    # -- request plumbing --------------------------------------------------------------------------------------

    async def _pick(self, tried: set[str]) -> Upstream:
        if self.supervisor is not None:
            url = await self.supervisor.wait_ready()
            upstream = self.upstreams[0]
            if upstream.url != url:  # restarted on a new port
                upstream.url = url
            return upstream
        candidates = [u for u in self.upstreams if u.healthy and u.url not in tried]
        if not candidates:
            listed = "; ".join(f"{u.url}: {u.last_error or 'down'}" for u in self.upstreams)
            raise ProviderError(f"model '{self.model_id}': no healthy upstream ({listed})")
        return min(candidates, key=lambda u: u.outstanding)

    async def _failure(self, upstream: Upstream, error: httpx.HTTPError) -> HeylookError:
        """A transport error as a clear ProviderError (naming the crash when the supervised process died)."""
        if isinstance(error, httpx.TimeoutException):
            return ProviderError(
                f"model '{self.model_id}': upstream {upstream.url} sent nothing for "
                f"{self.config.request_timeout_s:g} s (request_timeout_s): {type(error).__name__}"
            )
        if self.supervisor is not None:
            reason = await self.supervisor.exit_reason(upstream.url)
            if reason is not None:
                return ProviderError(
                    f"llama-server for model '{self.model_id}' exited ({reason}) during the request; it is being "
                    f"restarted, retry the request. Its last output:\n{self.supervisor.output(8)}"
                )
        return ProviderError(
            f"model '{self.model_id}': upstream {upstream.url} failed: {type(error).__name__}: {error}"
        )

    def _body(self, request: ChatRequest | CompletionRequest) -> dict[str, Any]:
        body: dict[str, Any] = {}
        if self.config.upstream_model:
            body["model"] = self.config.upstream_model
        if request.max_tokens is not None:
            body["max_tokens"] = request.max_tokens
        for name in _SAMPLING:
            value = getattr(request, name)
            if value is not None:
                body[name] = value
        if request.repetition_penalty is not None:
            body["repeat_penalty"] = request.repetition_penalty
        stops = request.stop_list()
        if stops:
            body["stop"] = stops
        body.update(request.extra_params())
        return body

    def chat(self, request: ChatRequest, cancel: CancelToken) -> AsyncIterator[Delta]:
        body = self._body(request)
        body["messages"] = [m.model_dump(exclude_none=True, mode="json") for m in request.messages]
        if request.logprobs:
            body["logprobs"] = True
            if request.top_logprobs is not None:
                body["top_logprobs"] = request.top_logprobs
        if request.response_format is not None and request.response_format.type != "text":
            body["response_format"] = request.response_format.model_dump(by_alias=True, exclude_none=True)
        return self._generate("/v1/chat/completions", body, request.stream, cancel, chat=True)

    def complete(
        self, request: CompletionRequest, prompt: str | list[int], cancel: CancelToken
    ) -> AsyncIterator[Delta]:
        body = self._body(request)
        body["prompt"] = prompt
        if request.logprobs is not None:
            body["logprobs"] = request.logprobs
        return self._generate("/v1/completions", body, request.stream, cancel, chat=False)

    async def _generate(
        self, path: str, body: dict[str, Any], stream: bool, cancel: CancelToken, *, chat: bool
    ) -> AsyncIterator[Delta]:
        client = self.client
        if client is None:
            raise ProviderError(f"model '{self.model_id}' is not loaded")
        if stream:
            body["stream"] = True
            body["stream_options"] = {"include_usage": True}
        tried: set[str] = set()
        while True:
            upstream = await self._pick(tried)
            upstream.outstanding += 1
            started = False
            try:
                if not stream:
                    response = await client.post(upstream.url + path, json=body)
                    started = True
                    if response.status_code != 200:
                        raise translate_error(response.status_code, _error_message(response.content), self.model_id)
                    for delta in self._whole(response.content, chat):
                        yield delta
                else:
                    response = await client.send(
                        client.build_request("POST", upstream.url + path, json=body), stream=True
                    )
                    started = True
                    finished = False
                    try:
                        if response.status_code != 200:
                            content = await response.aread()
                            raise translate_error(response.status_code, _error_message(content), self.model_id)
                        async for delta in self._stream(response, cancel, chat):
                            yield delta
                        finished = True
                    finally:
                        if not finished:
                            _hang_up(response)
                        with anyio.CancelScope(shield=True):
                            await response.aclose()
                upstream.served += 1
                return
            except httpx.ConnectError as error:
                if self.supervisor is None and not started:  # remote: skip this upstream, try the next one
                    self._mark(upstream, False, f"{type(error).__name__}: {error}")
                    tried.add(upstream.url)
                    continue
                raise await self._failure(upstream, error) from error
            except httpx.HTTPError as error:
                raise await self._failure(upstream, error) from error
            finally:
                upstream.outstanding -= 1

    def _whole(self, content: bytes, chat: bool) -> list[Delta]:
        data = _loads(content)
        choice = (data.get("choices") or [{}])[0]
        if chat:
            message = choice.get("message") or {}
            text = message.get("content") or ""
            reasoning = message.get("reasoning_content") or ""
            tool_calls = message.get("tool_calls")
            if tool_calls:
                tool_calls = [{"index": i, **call} for i, call in enumerate(tool_calls)]
        else:
            text, reasoning, tool_calls = choice.get("text") or "", "", None
        out = []
        logprobs = _logprobs(choice.get("logprobs"))
        if text or reasoning or tool_calls or logprobs:
            out.append(Delta(text=text, reasoning=reasoning, tool_calls=tool_calls, logprobs=logprobs))
        out.append(Delta(finish_reason=choice.get("finish_reason") or "stop", usage=_usage(data.get("usage"))))
        return out

    async def _stream(self, response: httpx.Response, cancel: CancelToken, chat: bool) -> AsyncIterator[Delta]:
        """The upstream's SSE stream as deltas: split raw bytes into ``data:`` lines, one JSON parse per chunk."""
        finish: str | None = None
        usage: dict[str, Any] | None = None
        held = b""
        key = "delta" if chat else "text"
        async for chunk in response.aiter_raw():
            if held:
                chunk = held + chunk
            lines = chunk.split(b"\n")
            held = lines.pop()
            for line in lines:
                if not line.startswith(b"data: "):
                    continue  # blank separators, comments, "event:" lines
                payload = line[6:]
                if payload.startswith(b"[DONE]"):
                    yield Delta(finish_reason=finish or "stop", usage=_usage(usage))
                    return
                data = _loads(payload)
                if "error" in data:
                    error = data["error"]
                    message = error.get("message", str(error)) if isinstance(error, dict) else str(error)
                    status = error.get("code") if isinstance(error, dict) else None
                    raise translate_error(status if isinstance(status, int) else 500, message, self.model_id)
                if data.get("usage"):
                    usage = data["usage"]
                choices = data.get("choices")
                if not choices:
                    continue
                choice = choices[0]
                if choice.get("finish_reason"):
                    finish = choice["finish_reason"]
                logprobs = choice.get("logprobs")
                if chat:
                    delta = choice.get(key) or {}
                    text = delta.get("content")
                    reasoning = delta.get("reasoning_content")
                    tool_calls = delta.get("tool_calls")
                    if text or reasoning or tool_calls or logprobs:
                        yield Delta(
                            text=text or "",
                            reasoning=reasoning or "",
                            tool_calls=tool_calls,
                            logprobs=_logprobs(logprobs),
                        )
                else:
                    text = choice.get(key)
                    if text or logprobs:
                        yield Delta(text=text or "", logprobs=_logprobs(logprobs))
            if cancel.cancelled:
                return  # leaving the ``async with`` closes the connection; llama-server frees the slot
        if finish is None:
            raise ProviderError(f"model '{self.model_id}': the upstream stream ended before its last chunk")
        yield Delta(finish_reason=finish, usage=_usage(usage))

    # -- embeddings and tokens ---------------------------------------------------------------------------------

    async def _post(self, path: str, body: dict[str, Any]) -> Any:
        client = self.client
        if client is None:
            raise ProviderError(f"model '{self.model_id}' is not loaded")
        tried: set[str] = set()
        while True:
            upstream = await self._pick(tried)
            upstream.outstanding += 1
            try:
                response = await client.post(upstream.url + path, json=body)
            except httpx.ConnectError as error:
                if self.supervisor is None:
                    self._mark(upstream, False, f"{type(error).__name__}: {error}")
                    tried.add(upstream.url)
                    continue
                raise await self._failure(upstream, error) from error
            except httpx.HTTPError as error:
                raise await self._failure(upstream, error) from error
            finally:
                upstream.outstanding -= 1
            if response.status_code != 200:
                raise translate_error(response.status_code, _error_message(response.content), self.model_id)
            upstream.served += 1
            return _loads(response.content)

    async def embed(self, request: EmbeddingRequest, inputs: list[str] | list[list[int]]) -> EmbeddingResult:
        body: dict[str, Any] = {"input": inputs, "encoding_format": "float"}
        if self.config.upstream_model:
            body["model"] = self.config.upstream_model
        data = await self._post("/v1/embeddings", body)
        items = sorted(data.get("data") or [], key=lambda item: item.get("index", 0))
        if len(items) != len(inputs):
            raise ProviderError(f"model '{self.model_id}': {len(items)} embeddings for {len(inputs)} inputs")
        usage = data.get("usage") or {}
        return EmbeddingResult([item["embedding"] for item in items], int(usage.get("prompt_tokens") or 0))

    async def tokenize(self, text: str, add_special_tokens: bool) -> list[int]:
        data = await self._post("/tokenize", {"content": text, "add_special": add_special_tokens})
        return [int(token) for token in data.get("tokens") or []]


__all__ = ["LlamaServerProvider", "Upstream", "translate_error"]
