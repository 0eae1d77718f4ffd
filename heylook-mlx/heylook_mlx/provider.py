"""The ``mlx`` provider: one configured model served by mlx-lm, mlx-vlm or mlx-embeddings.

Every call runs on the model's own worker thread (:class:`heylook_core.ThreadedProvider`), ``load_sync``
included: MLX aborts the process when arrays move between threads, so the engine modules, which import MLX, are
themselves imported on that thread, when the model loads.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from heylook_core import BadRequestError, CancelToken, HeylookError, ProviderError, ThreadedProvider
from heylook_core.types import (
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
)
from heylook_mlx.config import MLXConfig

logger = logging.getLogger(__name__)

T = TypeVar("T")


class MLXProvider(ThreadedProvider):
    config: MLXConfig

    def __init__(self, model_id: str, config: Any) -> None:
        super().__init__(model_id, config)
        self.engine: Any = None
        self.planner: Any = None  # heylook_mlx.batching.BatchPlanner (text models)

    def load_sync(self) -> None:
        if self.config.embedding:
            from heylook_mlx.embeddings import EmbeddingEngine

            self.engine = EmbeddingEngine(self.model_id, self.config)
        elif self.config.vision:
            from heylook_mlx.vision import VisionEngine

            self.engine = VisionEngine(self.model_id, self.config)
        else:
            from heylook_mlx.batching import BatchPlanner
            from heylook_mlx.text import TextEngine

            self.engine = TextEngine(self.model_id, self.config)
            self.planner = BatchPlanner(self.engine)
        logger.info("model '%s' loaded from %s", self.model_id, self.config.model_path)

    def unload_sync(self) -> None:
        engine, self.engine = self.engine, None
        self.planner = None
        if engine is not None:
            engine.close()

    @property
    def tool_parser(self) -> Any:
        """The format the core reads tool calls in (from the model's chat template); None without one."""
        return getattr(self.engine, "tool_parser", None)

    def info(self) -> dict[str, Any]:
        context = getattr(self.engine, "context_length", None)
        return {"context_length": context} if context else {}

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

    def chat_sync(self, request: ChatRequest, cancel: CancelToken) -> Iterator[Delta]:
        return self._guarded(lambda: self.engine.chat(request, cancel))

    def complete_sync(
        self, request: CompletionRequest, prompt: str | list[int], cancel: CancelToken
    ) -> Iterator[Delta]:
        if request.echo or request.suffix:
            raise BadRequestError("echo and suffix are not supported", param="echo" if request.echo else "suffix")
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
