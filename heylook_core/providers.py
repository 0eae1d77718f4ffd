"""The provider contract: what a backend implements to serve models.

A plugin registers a :class:`ProviderSpec` (through the ``register_providers`` hook). The spec is light: a name,
a config schema, the capabilities and parameters a model of that provider offers, an availability check, and a
``factory`` that imports the heavy engine only when a model is first loaded.

The factory returns a :class:`Provider` subclass. One provider instance serves one configured model: the core
calls :meth:`Provider.load` once, then the operations its capabilities name, then :meth:`Provider.unload`. The core
validates every request before it reaches a provider: a provider is never called with a capability or parameter
its spec did not declare.

Two ways to implement a provider:

* :class:`Provider` directly, with ``async`` methods: for backends reached over the network (a supervised
  ``llama-server``, a remote upstream). Any number of requests may be in flight, up to ``max_concurrency``.
* :class:`ThreadedProvider`, with blocking ``*_sync`` methods: for in-process engines. Every call, ``load_sync``
  included, runs on one worker thread that the model owns (see :mod:`heylook_core.runner`).
"""

from __future__ import annotations

import enum
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Generic, cast

from pydantic import BaseModel, ConfigDict
from typing_extensions import TypeVar

from heylook_core.runner import CancelToken, ModelWorker, WorkerFailedError
from heylook_core.types import (
    AudioInput,
    BatchChatRequest,
    BatchChatResult,
    ChatRequest,
    ChatResult,
    CompletionRequest,
    Delta,
    EmbeddingRequest,
    EmbeddingResult,
    HiddenStates,
    HiddenStatesRequest,
    Transcription,
    TranscriptionRequest,
)


class Capability(str, enum.Enum):
    """What a model can do; each maps to an endpoint (``vision`` to image parts in chat messages)."""

    CHAT = "chat"
    COMPLETION = "completion"
    EMBEDDINGS = "embeddings"
    HIDDEN_STATES = "hidden_states"
    BATCH_CHAT = "batch_chat"
    TOKENIZE = "tokenize"
    TRANSCRIPTION = "transcription"
    TRANSLATION = "translation"
    VISION = "vision"


class ProviderConfig(BaseModel):
    """Base for a provider's ``[models.config]`` schema: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())


# The config type of a provider and of its spec: ``Provider[MyConfig]`` types ``self.config``; a provider written
# without one (``Provider``) gets a plain :class:`ProviderConfig`.
ConfigT = TypeVar("ConfigT", bound=ProviderConfig, default=ProviderConfig)


@dataclass(frozen=True)
class Availability:
    """Whether a provider can run on this host, and if not, how to fix that."""

    ok: bool
    detail: str = ""
    fix: str = ""


def _always_available() -> Availability:
    return Availability(True)


@dataclass(frozen=True)
class ProviderSpec(Generic[ConfigT]):
    """Registration record for a provider.

    ``factory`` returns the :class:`Provider` subclass and is the only place a backend library may be imported.
    ``capabilities`` and ``parameters`` may be sets, or functions of the validated config (a llama.cpp model
    serves embeddings only with ``embedding = true``). ``parameters`` are the optional request parameters the
    model honours: :class:`~heylook_core.parameters.Parameter` members, best written as a union of
    :class:`~heylook_core.parameters.ParameterGroup` groups, plus names of the backend's own request fields.
    ``max_concurrency`` is how many requests one model runs at once (a function of the config too, for a server
    with parallel slots).
    """

    name: str
    factory: Callable[[], type[Provider[ConfigT]]]
    config_schema: type[ConfigT] = cast("type[ConfigT]", ProviderConfig)  # the default for a spec without one
    capabilities: frozenset[Capability] | Callable[[ConfigT], frozenset[Capability]] = frozenset({Capability.CHAT})
    parameters: frozenset[str] | Callable[[ConfigT], frozenset[str]] = frozenset()
    max_concurrency: int | Callable[[ConfigT], int] = 1
    check: Callable[[], Availability] = _always_available
    description: str = ""
    plugin: str = field(default="", compare=False)

    def capabilities_for(self, config: ConfigT) -> frozenset[Capability]:
        value = self.capabilities
        return frozenset(value(config) if callable(value) else value)

    def parameters_for(self, config: ConfigT) -> frozenset[str]:
        value = self.parameters
        return frozenset(value(config) if callable(value) else value)

    def concurrency_for(self, config: ConfigT) -> int:
        value = self.max_concurrency
        return max(1, int(value(config) if callable(value) else value))


class Provider(Generic[ConfigT]):
    """One configured model of one backend. Override what the spec's capabilities name.

    ``self.config`` is the model's validated ``[models.config]``, an instance of the spec's ``config_schema``:
    ``class MyProvider(Provider[MyConfig])`` types it.

    ``chat`` and ``complete`` are async generators of :class:`~heylook_core.types.Delta`: text pieces as they are
    produced, then one last delta with ``finish_reason`` and ``usage``. They check ``cancel.cancelled`` between
    tokens. Errors are raised as :mod:`heylook_core.errors` classes (``BadRequestError`` for a request the engine
    refuses, ``ProviderError`` for an engine failure); anything else becomes a 500.
    """

    def __init__(self, model_id: str, config: ConfigT) -> None:
        self.model_id = model_id
        self.config: ConfigT = config

    # Seconds a stream may go without producing anything before the model counts as wedged ([server]
    # stall_timeout_s; the router sets it before load). Used by ThreadedProvider's worker.
    stall_timeout: float | None = None

    @property
    def failure(self) -> str | None:
        """Why this loaded model can no longer serve (its worker died or wedged); the router then reloads it."""
        return None

    def abandon(self) -> None:
        """Drop a failed model without waiting for it (its unload could hang); the default does nothing."""

    async def load(self) -> None:
        """Make the model ready; raise with a message that names what is wrong (a path, a missing library)."""

    async def unload(self) -> None:
        """Free the model's memory and processes."""

    def chat(self, request: ChatRequest, cancel: CancelToken) -> AsyncIterator[Delta]:
        raise NotImplementedError

    def complete(
        self, request: CompletionRequest, prompt: str | list[int], cancel: CancelToken
    ) -> AsyncIterator[Delta]:
        """Continue ``prompt`` (one of the request's prompts: text or token ids)."""
        raise NotImplementedError

    async def embed(self, request: EmbeddingRequest, inputs: list[str] | list[list[int]]) -> EmbeddingResult:
        raise NotImplementedError

    async def hidden_states(self, request: HiddenStatesRequest) -> list[HiddenStates]:
        """One :class:`HiddenStates` per input, for ``request.layer``."""
        raise NotImplementedError

    async def batch_chat(self, request: BatchChatRequest, cancel: CancelToken) -> list[ChatResult] | BatchChatResult:
        """Results in the order of ``request.requests``; a :class:`BatchChatResult` also says how they ran."""
        raise NotImplementedError

    async def tokenize(self, text: str, add_special_tokens: bool) -> list[int]:
        raise NotImplementedError

    async def transcribe(self, audio: AudioInput, request: TranscriptionRequest) -> Transcription:
        raise NotImplementedError

    def refused_parameters(self) -> dict[str, str]:
        """Parameters the spec declares that this loaded model cannot honour, each with the reason.

        Called once, after ``load``: a model whose chat template renders no tools returns ``{"tools": "its chat
        template renders no tools", ...}``. The core drops them from the model's card and answers a request that sets
        one with a 400 naming it and giving the reason. The default refuses nothing.
        """
        return {}

    def info(self) -> dict[str, Any]:
        """Extra facts for ``/v1/models`` and ``/health`` (context size, process id, ...).

        The conformance suite (:mod:`heylook_core.conformance`) reads these keys where present: ``context_length``
        (tokens), and for embedding models ``embedding_dimensions`` (the length of a vector) and
        ``embedding_normalized`` (``True`` when every vector has unit length).
        """
        return {}


class ThreadedProvider(Provider[ConfigT]):
    """A provider for a blocking in-process engine: implement the ``*_sync`` methods.

    Every ``*_sync`` call, from ``load_sync`` to ``unload_sync``, runs on the model's own worker thread, one at a
    time, so the engine never sees two threads. ``chat_sync`` and ``complete_sync`` are plain generators; their
    items cross to the event loop through a bounded buffer.
    """

    def __init__(self, model_id: str, config: ConfigT) -> None:
        super().__init__(model_id, config)
        self.worker: ModelWorker | None = None

    def _require_worker(self) -> ModelWorker:
        if self.worker is None:
            raise RuntimeError(f"model '{self.model_id}' is not loaded")
        return self.worker

    @property
    def failure(self) -> str | None:
        worker = self.worker
        if worker is None:
            return None
        try:
            worker._check()
        except WorkerFailedError:
            return worker.failure
        return None

    def abandon(self) -> None:
        if self.worker is not None:
            self.worker.abandon()
            self.worker = None

    async def load(self) -> None:
        self.worker = ModelWorker(self.model_id, stall_timeout=self.stall_timeout)
        try:
            await self.worker.call(self.load_sync)
        except BaseException:
            self.worker.stop(timeout=5)
            self.worker = None
            raise

    async def unload(self) -> None:
        worker = self.worker
        if worker is None:
            return
        if self.failure is not None:  # a dead or wedged worker cannot run unload_sync
            self.abandon()
            return
        try:
            await worker.call(self.unload_sync)
        finally:
            worker.stop()
            self.worker = None

    def chat(self, request: ChatRequest, cancel: CancelToken) -> AsyncIterator[Delta]:
        return self._require_worker().stream(lambda: self.chat_sync(request, cancel), cancel)

    def complete(
        self, request: CompletionRequest, prompt: str | list[int], cancel: CancelToken
    ) -> AsyncIterator[Delta]:
        return self._require_worker().stream(lambda: self.complete_sync(request, prompt, cancel), cancel)

    async def embed(self, request: EmbeddingRequest, inputs: list[str] | list[list[int]]) -> EmbeddingResult:
        return await self._require_worker().call(self.embed_sync, request, inputs)

    async def hidden_states(self, request: HiddenStatesRequest) -> list[HiddenStates]:
        return await self._require_worker().call(self.hidden_states_sync, request)

    async def batch_chat(self, request: BatchChatRequest, cancel: CancelToken) -> list[ChatResult] | BatchChatResult:
        return await self._require_worker().call(self.batch_chat_sync, request, cancel)

    async def tokenize(self, text: str, add_special_tokens: bool) -> list[int]:
        return await self._require_worker().call(self.tokenize_sync, text, add_special_tokens)

    async def transcribe(self, audio: AudioInput, request: TranscriptionRequest) -> Transcription:
        return await self._require_worker().call(self.transcribe_sync, audio, request)

    # The blocking side. Override load_sync and what the capabilities name.

    def load_sync(self) -> None:
        """Load the engine and weights (runs on the worker thread)."""

    def unload_sync(self) -> None:
        """Drop every reference to the engine (runs on the worker thread)."""

    def chat_sync(self, request: ChatRequest, cancel: CancelToken) -> Iterator[Delta]:
        raise NotImplementedError

    def complete_sync(
        self, request: CompletionRequest, prompt: str | list[int], cancel: CancelToken
    ) -> Iterator[Delta]:
        raise NotImplementedError

    def embed_sync(self, request: EmbeddingRequest, inputs: list[str] | list[list[int]]) -> EmbeddingResult:
        raise NotImplementedError

    def hidden_states_sync(self, request: HiddenStatesRequest) -> list[HiddenStates]:
        raise NotImplementedError

    def batch_chat_sync(self, request: BatchChatRequest, cancel: CancelToken) -> list[ChatResult] | BatchChatResult:
        raise NotImplementedError

    def tokenize_sync(self, text: str, add_special_tokens: bool) -> list[int]:
        raise NotImplementedError

    def transcribe_sync(self, audio: AudioInput, request: TranscriptionRequest) -> Transcription:
        raise NotImplementedError
