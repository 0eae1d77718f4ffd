"""Request parameters to mlx-lm samplers and logits processors, and log-probability readback.

Imported only on a model's worker thread (it imports MLX).
"""

from __future__ import annotations

from typing import Any

import mlx.core as mx
import numpy as np
from mlx_lm.sample_utils import make_logits_processors, make_sampler

from heylook_core import BadRequestError, ChatRequest, CompletionRequest, SamplingParams, TokenLogprob, TopLogprob


def sampler_for(request: SamplingParams) -> Any:
    """A sampler from the request's temperature, top_p, top_k and min_p (OpenAI defaults: temperature 1)."""
    temperature = 1.0 if request.temperature is None else request.temperature
    return make_sampler(
        temp=temperature,
        top_p=request.top_p if request.top_p is not None else 0.0,
        min_p=request.min_p or 0.0,
        top_k=request.top_k or 0,
    )


def reading(request: ChatRequest | CompletionRequest) -> tuple[bool, int, str]:
    """What a chat or completion request asks to read besides the text: whether log-probabilities, how many
    alternatives per token (Chat Completions: ``logprobs`` and ``top_logprobs``; Completions: ``logprobs`` is the
    count), and the request field its prompt came in (for errors)."""
    if isinstance(request, ChatRequest):
        return bool(request.logprobs), request.top_logprobs or 0, "messages"
    return request.logprobs is not None, request.logprobs or 0, "prompt"


def logit_bias_for(request: SamplingParams, vocab_size: int) -> dict[int, float] | None:
    if not request.logit_bias:
        return None
    bias: dict[int, float] = {}
    for key, value in request.logit_bias.items():
        try:
            token = int(key)
        except ValueError:
            raise BadRequestError(f"logit_bias key '{key}' is not a token id", param="logit_bias") from None
        if not 0 <= token < vocab_size:
            raise BadRequestError(
                f"logit_bias token id {token} is outside the vocabulary (0..{vocab_size - 1})", param="logit_bias"
            )
        if not -100 <= value <= 100:
            raise BadRequestError("logit_bias values must be between -100 and 100", param="logit_bias")
        bias[token] = float(value)
    return bias


def processors_for(request: SamplingParams, vocab_size: int) -> list[Any]:
    """Penalties and logit bias as mlx-lm logits processors (empty when the request sets none)."""
    return make_logits_processors(
        logit_bias=logit_bias_for(request, vocab_size),
        repetition_penalty=request.repetition_penalty,
        presence_penalty=request.presence_penalty,
        frequency_penalty=request.frequency_penalty,
    )


def seed(request: SamplingParams) -> None:
    if request.seed is not None:
        mx.random.seed(request.seed & 0xFFFFFFFF)


def host_vector(logprobs: mx.array) -> np.ndarray:
    """A step's log-probabilities as a NumPy vector (float32 or float16), read from the array itself.

    ``generate_step`` has already queued the next step when it hands out a token, on the stream that stays current
    while the caller runs, so any new MLX operation on the log-probabilities (an index, ``astype``) would run after
    that step and wait for it, once per token. The array itself was evaluated with the token: reading its buffer
    waits for nothing more. bfloat16, which NumPy lacks, is widened from its bits.
    """
    if logprobs.dtype == mx.bfloat16:
        view = memoryview(logprobs)
        if view.c_contiguous:
            return _widen(np.frombuffer(view, dtype=np.uint16))
        logprobs = logprobs.astype(mx.float32)  # a strided slice (a batch row): an operation, as before
    return np.asarray(logprobs).reshape(-1)


def _widen(bits: np.ndarray) -> np.ndarray:
    """bfloat16 bit patterns as float32 values (the same numbers: bfloat16 is float32's upper half)."""
    return (bits.astype(np.uint32) << 16).view(np.float32)


def _one(logprobs: mx.array, token: int) -> float:
    """One entry of a step's log-probabilities, read as :func:`host_vector` reads them (without widening them all)."""
    if logprobs.dtype == mx.bfloat16:
        view = memoryview(logprobs)
        if view.c_contiguous:
            return float(_widen(np.frombuffer(view, dtype=np.uint16)[token : token + 1])[0])
    return float(host_vector(logprobs)[token])


class LogprobReader:
    """Reads the sampled token's log-probability (and the top ``n``) from a step's log-probability vector.

    Used only when a request asks for logprobs. The values are read on the host (:func:`host_vector`), so reading
    them does not wait for the step MLX is computing meanwhile.
    """

    def __init__(self, tokenizer: Any, top_n: int) -> None:
        self.tokenizer = tokenizer
        self.top_n = top_n

    def _piece(self, token: int) -> tuple[str, list[int]]:
        text = self.tokenizer.decode([token])
        return text, list(text.encode("utf-8"))

    def read(self, token: int, logprobs: mx.array) -> TokenLogprob:
        text, raw = self._piece(token)
        if not self.top_n:
            return TokenLogprob(token=text, logprob=_one(logprobs, token), bytes=raw)
        vector = host_vector(logprobs)
        entry = TokenLogprob(token=text, logprob=float(vector[token]), bytes=raw)
        top = np.argpartition(-vector, self.top_n - 1)[: self.top_n]
        for index in top[np.argsort(-vector[top], kind="stable")].tolist():
            piece, piece_raw = self._piece(index)
            entry.top_logprobs.append(TopLogprob(token=piece, logprob=float(vector[index]), bytes=piece_raw))
        return entry
