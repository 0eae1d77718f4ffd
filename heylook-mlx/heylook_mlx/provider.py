"""The ``mlx`` provider: one configured model served by mlx-lm, mlx-vlm or mlx-embeddings.

Every call runs on the model's own worker thread (:class:`heylook_core.ThreadedProvider`), ``load_sync``
included: MLX aborts the process when arrays move between threads, so the engine modules, which import MLX, are
themselves imported on that thread, when the model loads.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

from heylook_core import BadRequestError, CancelToken, ThreadedProvider
from heylook_core.types import (
    BatchChatRequest,
    ChatRequest,
    ChatResult,
    CompletionRequest,
    Delta,
    EmbeddingRequest,
    EmbeddingResult,
    HiddenStates,
    HiddenStatesRequest,
)
from heylook_mlx.plugin import MLXConfig

logger = logging.getLogger(__name__)


class MLXProvider(ThreadedProvider):
    config: MLXConfig

    def __init__(self, model_id: str, config: Any) -> None:
        super().__init__(model_id, config)
        self.engine: Any = None

    def load_sync(self) -> None:
        if self.config.embedding:
            from heylook_mlx.embeddings import EmbeddingEngine

            self.engine = EmbeddingEngine(self.model_id, self.config)
        elif self.config.vision:
            from heylook_mlx.vision import VisionEngine

            self.engine = VisionEngine(self.model_id, self.config)
        else:
            from heylook_mlx.text import TextEngine

            self.engine = TextEngine(self.model_id, self.config)
        logger.info("model '%s' loaded from %s", self.model_id, self.config.model_path)

    def unload_sync(self) -> None:
        engine, self.engine = self.engine, None
        if engine is not None:
            engine.close()

    def info(self) -> dict[str, Any]:
        context = getattr(self.engine, "context_length", None)
        return {"context_length": context} if context else {}

    def chat_sync(self, request: ChatRequest, cancel: CancelToken) -> Iterator[Delta]:
        return self.engine.chat(request, cancel)

    def complete_sync(
        self, request: CompletionRequest, prompt: str | list[int], cancel: CancelToken
    ) -> Iterator[Delta]:
        if request.echo or request.suffix:
            raise BadRequestError("echo and suffix are not supported", param="echo" if request.echo else "suffix")
        return self.engine.complete(request, prompt, cancel)

    def batch_chat_sync(self, request: BatchChatRequest, cancel: CancelToken) -> list[ChatResult]:
        return self.engine.batch_chat(request, cancel)

    def hidden_states_sync(self, request: HiddenStatesRequest) -> list[HiddenStates]:
        return self.engine.hidden_states(request)

    def embed_sync(self, request: EmbeddingRequest, inputs: list[str] | list[list[int]]) -> EmbeddingResult:
        return self.engine.embed(request, inputs)

    def tokenize_sync(self, text: str, add_special_tokens: bool) -> list[int]:
        return self.engine.tokenize(text, add_special_tokens)
