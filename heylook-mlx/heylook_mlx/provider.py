"""The ``mlx`` provider: one configured model served by mlx-lm, mlx-vlm or mlx-embeddings.

Every call runs on the model's own worker thread (:class:`heylook_core.ThreadedProvider`), ``load_sync``
included: MLX aborts the process when arrays move between threads, so the engine modules, which import MLX, are
themselves imported on that thread, when the model loads.

A text model with ``concurrency`` above 1 streams its chat and completion requests through a
:class:`heylook_mlx.batching.Batcher` (continuous batching on the same worker thread); with 1 each request runs
alone, as ``ThreadedProvider`` runs it.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, TypeVar

from heylook_core import (
    BadRequestError,
    BatchChatRequest,
    BatchChatResult,
    CancelToken,
    ChatRequest,
    ChatResult,
    CompletionRequest,
    Delta,
    EmbeddingRequest,
    EmbeddingResult,
    HeylookError,
    HiddenStates,
    HiddenStatesRequest,
    ProviderError,
    ThreadedProvider,
)
from heylook_mlx.config import MLXConfig

logger = logging.getLogger(__name__)

T = TypeVar("T")


class MLXProvider(ThreadedProvider[MLXConfig]):
    def __init__(self, model_id: str, config: MLXConfig) -> None:
        super().__init__(model_id, config)
        self.engine: Any = None
        self.planner: Any = None  # heylook_mlx.batching.BatchPlanner (text models)
        self.batcher: Any = None  # heylook_mlx.batching.Batcher (text models with concurrency > 1)

    def load_sync(self) -> None:
        if self.config.embedding:
            from heylook_mlx.embeddings import EmbeddingEngine

            self.engine = EmbeddingEngine(self.model_id, self.config)
        elif self.config.vision:
            from heylook_mlx.vision import VisionEngine

            self.engine = VisionEngine(self.model_id, self.config)
        else:
            from heylook_mlx.batching import Batcher, BatchPlanner
            from heylook_mlx.text import TextEngine

            self.engine = TextEngine(self.model_id, self.config)
            self.planner = BatchPlanner(self.engine)
            if self.config.concurrency > 1:
                if self.planner.batchable:
                    assert self.worker is not None
                    self.batcher = Batcher(
                        self.engine, self.worker, self.config.concurrency, self._failed, self.stall_timeout
                    )
                else:
                    logger.warning(
                        "model '%s': concurrency = %d, but its cache types do not batch in mlx-lm; its requests run "
                        "one at a time",
                        self.model_id,
                        self.config.concurrency,
                    )
        logger.info("model '%s' loaded from %s", self.model_id, self.config.model_path)

    def unload_sync(self) -> None:
        if self.batcher is not None:
            self.batcher.reset()
        engine, self.engine = self.engine, None
        self.planner = None
        if engine is not None:
            engine.close()

    async def unload(self) -> None:
        if self.batcher is not None:
            self.batcher.close()
        await super().unload()

    @property
    def failure(self) -> str | None:
        failure = super().failure
        if failure is None and self.batcher is not None:
            failure = self.batcher.failure
        return failure

    @property
    def tool_parser(self) -> Any:
        """The format the core reads tool calls in (from the model's chat template); None without one."""
        return getattr(self.engine, "tool_parser", None)

    def refused_parameters(self) -> dict[str, str]:
        """A text model whose chat template renders no tools refuses them (its card then offers none)."""
        if self.config.embedding or self.config.vision or self.engine is None or self.tool_parser is not None:
            return {}
        from heylook_mlx.text import NO_TOOLS

        return {"tools": NO_TOOLS, "tool_choice": NO_TOOLS}

    def info(self) -> dict[str, Any]:
        context = getattr(self.engine, "context_length", None)
        facts: dict[str, Any] = {"context_length": context} if context else {}
        if self.config.concurrency > 1 and self.engine is not None:
            facts["continuous_batching"] = self.batcher is not None
        dimensions = getattr(self.engine, "dimensions", None)
        if self.config.embedding and dimensions:  # mean-pooled and L2-normalised (heylook_mlx.embeddings)
            facts["embedding_dimensions"] = int(dimensions)
            facts["embedding_normalized"] = True
        return facts

    def _failed(self, error: Exception) -> ProviderError:
        logger.exception("model '%s': the engine failed", self.model_id, exc_info=error)
        return ProviderError(f"model '{self.model_id}': the MLX engine failed: {type(error).__name__}: {error}")

    def _guarded(self, make: Callable[[], Iterator[Delta]]) -> Iterator[Delta]:
        """Engine errors (not request errors) as a 502 naming the model."""
        try:
            yield from make()
        except HeylookError:
            raise
        except Exception as error:
            raise self._failed(error) from error

    def _call(self, fn: Callable[..., T], *args: Any) -> T:
        try:
            return fn(*args)
        except HeylookError:
            raise
        except Exception as error:
            raise self._failed(error) from error

    def chat(self, request: ChatRequest, cancel: CancelToken) -> AsyncIterator[Delta]:
        batcher, engine = self.batcher, self.engine
        if batcher is None:
            return super().chat(request, cancel)
        return batcher.generate(lambda: engine.chat_tokens(request), request, cancel)

    def complete(
        self, request: CompletionRequest, prompt: str | list[int], cancel: CancelToken
    ) -> AsyncIterator[Delta]:
        batcher, engine = self.batcher, self.engine
        if batcher is None:
            return super().complete(request, prompt, cancel)

        def tokens() -> list[int]:
            _check_completion(request)
            return engine.prompt_tokens(prompt)

        return batcher.generate(tokens, request, cancel)

    def chat_sync(self, request: ChatRequest, cancel: CancelToken) -> Iterator[Delta]:
        return self._guarded(lambda: self.engine.chat(request, cancel))

    def complete_sync(
        self, request: CompletionRequest, prompt: str | list[int], cancel: CancelToken
    ) -> Iterator[Delta]:
        _check_completion(request)
        return self._guarded(lambda: self.engine.complete(request, prompt, cancel))

    def batch_chat_sync(self, request: BatchChatRequest, cancel: CancelToken) -> list[ChatResult] | BatchChatResult:
        from heylook_mlx.batching import batch_chat

        return self._call(batch_chat, self.engine, self.planner, request, cancel)

    def hidden_states_sync(self, request: HiddenStatesRequest) -> list[HiddenStates]:
        return self._call(self.engine.hidden_states, request)

    def embed_sync(self, request: EmbeddingRequest, inputs: list[str] | list[list[int]]) -> EmbeddingResult:
        return self._call(self.engine.embed, request, inputs)

    def tokenize_sync(self, text: str, add_special_tokens: bool) -> list[int]:
        return self._call(self.engine.tokenize, text, add_special_tokens)


def _check_completion(request: CompletionRequest) -> None:
    if request.echo or request.suffix:
        raise BadRequestError("echo and suffix are not supported", param="echo" if request.echo else "suffix")
