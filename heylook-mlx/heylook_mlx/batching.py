"""Batched generation on mlx-lm's ``BatchGenerator``: ``/v1/batch/chat/completions``, and continuous batching of
concurrent chat and completion requests when a model's ``concurrency`` is above 1.

Everything that touches MLX runs on the model's worker thread (see :class:`heylook_core.ThreadedProvider`).

Per-sequence parameters. Each sequence has its own sampler, logits processors (penalties, ``logit_bias``),
``max_tokens``, stop handling and log-probability reading. Unseeded sequences with the same sampling parameters
share one sampler object, so the generator samples them in one call; a seeded sequence draws from its own random
key (:class:`SeededSampler`), so its text does not depend on what else is in the batch and equals what the
one-at-a-time path gives for that seed.

The batch endpoint (:func:`batch_chat`). On some devices batched decoding gains little or nothing per token over
decoding the requests one after another (mlx's CPU backend on Linux multiplies matrices with reference BLAS: a step
of 8 rows costs most of what 8 single steps cost). :class:`BatchPlanner` measures decode steps of the model at one
sequence and at the batch's width, once per width, and runs the requests batched only where that measured speedup is
at least
``BATCH_GAIN``; otherwise one after another, each with the prompt cache, as separate requests would. The response's
``batching`` field says which, and why. Batched, the prompt prefix that every request shares (a system prompt) is
processed once and copied into each sequence, and the prompts join the generator shortest first so that each prefill
chunk pads little.

Continuous batching (:class:`Batcher`). Requests join the running generator between decode steps and leave it when
they finish, when the core stops them (a stop sequence: ``cancel.stop()``, ended with the usage) or when their client
goes away (``cancel.cancel()``, dropped). Each request starts from the prompt cache like a one-at-a-time request and
leaves its KV cache there when it ends. The generator runs on the worker thread in slices of at most ``SLICE_S``, so
the model's other calls (tokenize, hidden states, the batch endpoint) run between slices; each step's tokens cross to
the event loop with at most one wake-up, and none for consumers that are still busy with earlier ones (:class:`_Pipe`).
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import mlx.core as mx
from mlx_lm.generate import BatchGenerator
from mlx_lm.models.cache import make_prompt_cache
from mlx_lm.sample_utils import apply_min_p, apply_top_k, apply_top_p, greedy_sampler

from heylook_core import (
    BatchChatRequest,
    BatchChatResult,
    CancelToken,
    ChatRequest,
    ChatResult,
    CompletionRequest,
    Delta,
    HeylookError,
    SamplingParams,
    ServiceUnavailableError,
    StopMatcher,
    TokenLogprob,
    Usage,
    WorkerFailedError,
)
from heylook_mlx.sampling import LogprobReader, processors_for, reading, sampler_for

if TYPE_CHECKING:
    from heylook_core import ModelWorker
    from heylook_mlx.text import TextEngine

logger = logging.getLogger(__name__)

BATCH_GAIN = 1.2  # auto: batch only where batched decoding measured at least this much faster than one at a time
SHARED_PREFIX_MIN = 8  # a prefix every prompt of a batch shares is processed once when it is at least this long
SLICE_S = 0.05  # continuous batching: seconds of decode steps per worker call
PLAN_CONTEXT = 16  # tokens of context in the decode steps the planner times


# -- samplers --------------------------------------------------------------------------------------------------------


class SeededSampler:
    """mlx-lm's sampler chain (top-p, min-p, top-k, then temperature) drawing from its own random key.

    Its draws are those that ``mx.random.seed(seed)`` followed by sampling alone gives (the one-at-a-time path), so a
    seeded request's text does not depend on the other sequences of its batch.
    """

    def __init__(self, request: SamplingParams, temperature: float) -> None:
        assert request.seed is not None
        self.temperature = temperature
        self.top_p = request.top_p if request.top_p is not None else 0.0
        self.min_p = request.min_p or 0.0
        self.top_k = request.top_k or 0
        self.key = mx.random.key(request.seed & 0xFFFFFFFF)

    def __call__(self, logprobs: mx.array) -> mx.array:
        if 0 < self.top_p < 1.0:
            logprobs = apply_top_p(logprobs, self.top_p)
        if self.min_p != 0.0:
            logprobs = apply_min_p(logprobs, self.min_p, 1)
        if self.top_k > 0:
            logprobs = apply_top_k(logprobs, self.top_k)
        self.key, subkey = mx.random.split(self.key)
        return mx.random.categorical(logprobs * (1.0 / self.temperature), key=subkey)


class Samplers:
    """The samplers of one generator's sequences: greedy and each unseeded parameter set shared, seeded ones own."""

    def __init__(self) -> None:
        self._shared: dict[tuple[float, float, float, int], Any] = {}

    def __call__(self, request: SamplingParams) -> Any:
        temperature = 1.0 if request.temperature is None else request.temperature
        if temperature == 0:
            return greedy_sampler
        if request.seed is not None:
            return SeededSampler(request, temperature)
        key = (temperature, request.top_p or 0.0, request.min_p or 0.0, request.top_k or 0)
        sampler = self._shared.get(key)
        if sampler is None:
            sampler = self._shared[key] = sampler_for(request)
        return sampler


# -- shared pieces ---------------------------------------------------------------------------------------------------


@dataclass(eq=False)
class _Sequence:
    """One request while the generator decodes it: its detokenizer, counts and log-probability reader."""

    prompt_tokens: int
    cached_tokens: int | None
    detokenizer: Any
    reader: LogprobReader | None
    tokens: int = 0  # generated tokens, an end token excluded

    def read(self, response: Any) -> tuple[str, list[TokenLogprob] | None]:
        """The text (and log-probabilities) that one of the generator's responses adds."""
        detokenizer = self.detokenizer
        if response.finish_reason == "stop":  # an end token: not part of the text
            detokenizer.finalize()
            return detokenizer.last_segment, None
        self.tokens += 1
        detokenizer.add_token(response.token)
        if response.finish_reason is not None:
            detokenizer.finalize()
        entries = [self.reader.read(response.token, response.logprobs)] if self.reader is not None else None
        return detokenizer.last_segment, entries

    def usage(self) -> Usage:
        return Usage(prompt_tokens=self.prompt_tokens, completion_tokens=self.tokens, cached_tokens=self.cached_tokens)


def _reuses_cache(engine: TextEngine) -> bool:
    """Whether batched sequences may start from and leave snapshots in the prompt cache.

    Not with a draft model (its snapshots hold the draft's layers too) nor a quantized KV cache (quantized layers do not
    batch); the batch then starts from fresh caches and leaves nothing behind.
    """
    return engine.prompt_cache is not None and engine.draft_model is None and engine.config.kv_bits is None


def _fetch(engine: TextEngine, tokens: list[int]) -> tuple[list[Any], list[int]]:
    if _reuses_cache(engine):
        return engine._fetch_cache(tokens)
    return engine._model_cache(engine.model), tokens


def _store(engine: TextEngine, cache: list[Any] | None, tokens: list[int] | None) -> None:
    if cache and tokens and _reuses_cache(engine):
        engine._store_cache(cache, list(tokens))


def _generator(engine: TextEngine, size: int) -> BatchGenerator:
    return BatchGenerator(
        engine.model,
        stop_tokens=[[token] for token in engine.tokenizer.eos_token_ids],
        completion_batch_size=size,
        prefill_batch_size=min(8, size),
        prefill_step_size=engine.config.prefill_step_size,
        max_kv_size=engine.config.max_kv_size,
    )


def batchable(engine: TextEngine) -> bool:
    """Whether every layer cache of the model can join a batch (mlx-lm merges caches that have ``merge``)."""
    return all(hasattr(cache, "merge") for cache in make_prompt_cache(engine.model))


def _common_prefix(prompts: list[list[int]]) -> int:
    """The length of the prefix all prompts share, leaving each at least one token to process."""
    first = prompts[0]
    limit = min(len(prompt) for prompt in prompts) - 1
    length = 0
    while length < limit and all(prompt[length] == first[length] for prompt in prompts):
        length += 1
    return length


def _prefill(engine: TextEngine, cache: list[Any], tokens: list[int]) -> None:
    step = engine.config.prefill_step_size
    for start in range(0, len(tokens), step):
        engine.model(mx.array(tokens[start : start + step])[None], cache=cache)
        mx.eval([entry.state for entry in cache])


def _starts(engine: TextEngine, prompts: list[list[int]]) -> list[tuple[list[Any], list[int]]]:
    """Each prompt's starting cache and the tokens still to process: from the prompt cache, or from one copy per
    prompt of the prefix all of them share, processed once, whichever covers more."""
    starts = [_fetch(engine, tokens) for tokens in prompts]
    common = _common_prefix(prompts) if len(prompts) > 1 else 0
    if common < SHARED_PREFIX_MIN:
        return starts
    short = [index for index, (_, rest) in enumerate(starts) if len(prompts[index]) - len(rest) < common]
    if len(short) < 2:
        return starts
    prefix = prompts[0][:common]
    shared, rest = _fetch(engine, prefix + prompts[0][common : common + 1])  # (the fetch leaves one token to do)
    cached = len(prefix) + 1 - len(rest)
    _prefill(engine, shared, prefix[cached:])
    for index in short:
        starts[index] = (copy.deepcopy(shared), prompts[index][common:])
    return starts


# -- the batch endpoint ----------------------------------------------------------------------------------------------


class BatchPlanner:
    """Whether the batch endpoint decodes its requests together (``batch_strategy``; ``auto`` measures it).

    ``auto`` times ``width`` decode steps of the model at one sequence against one step at the batch's width (a
    context of ``PLAN_CONTEXT`` tokens, alternating, best of each), once per width for the life of the loaded model.
    On the CPU device it counts the process's CPU time, not the wall clock: on a machine that other work keeps busy,
    the wall clock of a long step includes the time the scheduler gave to others, and a short one often does not.
    """

    def __init__(self, engine: TextEngine) -> None:
        self.engine = engine
        self.speedups: dict[int, float] = {}
        self.batchable = batchable(engine)

    def plan(self, count: int) -> tuple[str, str]:
        """``("batched" | "sequential", why)`` for a batch of ``count`` requests."""
        config = self.engine.config
        strategy = config.batch_strategy
        if not self.batchable:
            return "sequential", "the model's cache types do not batch in mlx-lm"
        if strategy == "batched":
            return "batched", "batch_strategy = 'batched'"
        if strategy == "sequential":
            return "sequential", "batch_strategy = 'sequential'"
        if count == 1:
            return "sequential", "a single request"
        if config.kv_bits is not None:
            return "sequential", "mlx-lm's batched decoding does not quantize the KV cache (kv_bits)"
        width = min(count, config.batch_size)
        speedup = self.speedups.get(width)
        if speedup is None:
            speedup = self.speedups[width] = self.measure(width)
            logger.info("model '%s': batched decoding of %d sequences: %.2fx", self.engine.model_id, width, speedup)
        measured = f"batched decoding of {width} sequences measured {speedup:.2f}x the tokens/s of one at a time"
        if speedup >= BATCH_GAIN:
            return "batched", measured
        return "sequential", f"{measured} on this model and device (batching needs {BATCH_GAIN}x)"

    def measure(self, width: int, rounds: int = 2) -> float:
        """Tokens/s of batched decoding at ``width`` sequences over tokens/s at one."""
        engine = self.engine
        model = engine.model
        base = engine._model_cache(model)
        _prefill(engine, base, [0] * PLAN_CONTEXT)
        single = copy.deepcopy(base)
        batch = [entry.merge([copy.deepcopy(entry) for _ in range(width)]) for entry in base]

        clock = time.process_time if mx.default_device() == mx.cpu else time.perf_counter

        def steps(cache: list[Any], rows: int, count: int) -> float:
            started = clock()
            for _ in range(count):
                logits = model(mx.zeros((rows, 1), dtype=mx.int32), cache=cache)
                mx.eval(mx.argmax(logits[:, -1, :], axis=-1))
            return clock() - started

        steps(single, 1, 1)
        steps(batch, width, 1)
        alone = together = float("inf")  # the same tokens each way, so that both see the same kind of noise
        for _ in range(rounds):
            alone = min(alone, steps(single, 1, width))
            together = min(together, steps(batch, width, 1))
        return alone / together


def batch_chat(engine: TextEngine, planner: BatchPlanner, request: BatchChatRequest, cancel: CancelToken) -> Any:
    """The batch endpoint's results, in request order, batched or one after another as ``planner`` decides."""
    items = request.requests
    prompts = [engine.chat_tokens(item) for item in items]
    limits = [item.max_tokens or engine.config.max_tokens_default for item in items]
    for index, (tokens, limit) in enumerate(zip(prompts, limits, strict=True)):
        engine._check_length(tokens, limit, f"requests[{index}].messages")
    mode, reason = planner.plan(len(items))
    if mode == "batched":
        results = _batched(engine, items, prompts, limits, cancel)
    else:
        results = [_one(engine, item, tokens, cancel) for item, tokens in zip(items, prompts, strict=True)]
    return BatchChatResult(results, mode=mode, reason=reason)


def _one(engine: TextEngine, item: ChatRequest, tokens: list[int], cancel: CancelToken) -> ChatResult:
    """One request of a batch through the one-at-a-time path (the prompt cache, a draft model, KV quantization)."""
    token = CancelToken()
    stopper = StopMatcher(item.stop_list())
    text: list[str] = []
    logprobs: list[TokenLogprob] = []
    result = ChatResult(usage=Usage(prompt_tokens=len(tokens)))
    stopped = False
    deltas = engine.generate(tokens, item, token)
    for delta in deltas:
        if cancel.cancelled:
            token.stop()
        if delta.text and not stopped:
            emit, stopped = stopper.feed(delta.text)
            text.append(emit)
            if stopped:
                token.stop()
        if delta.logprobs and not stopped:
            logprobs.extend(delta.logprobs)
        if delta.finish_reason is not None:
            result.finish_reason = "stop" if stopped else delta.finish_reason
            result.usage = delta.usage or result.usage
    if not stopped:
        text.append(stopper.flush())
    result.text = "".join(text)
    result.logprobs = logprobs if item.logprobs else None
    return result


@dataclass(eq=False)
class _Entry:
    """A batch endpoint request in the generator."""

    index: int
    sequence: _Sequence
    stopper: StopMatcher
    text: list[str] = field(default_factory=list)
    logprobs: list[TokenLogprob] = field(default_factory=list)
    finish_reason: str | None = None


def _batched(
    engine: TextEngine, items: list[ChatRequest], prompts: list[list[int]], limits: list[int], cancel: CancelToken
) -> list[ChatResult]:
    starts = _starts(engine, prompts)
    order = sorted(range(len(items)), key=lambda index: len(starts[index][1]))  # shortest first: less padding
    samplers = Samplers()
    generator = _generator(engine, engine.config.batch_size)
    entries: dict[int, _Entry] = {}
    try:
        uids = generator.insert(
            [starts[index][1] for index in order],
            max_tokens=[limits[index] for index in order],
            caches=[starts[index][0] for index in order],
            all_tokens=[prompts[index][: len(prompts[index]) - len(starts[index][1])] for index in order],
            samplers=[samplers(items[index]) for index in order],
            logits_processors=[processors_for(items[index], engine.vocab_size) for index in order],
        )
        for uid, index in zip(uids, order, strict=True):
            item, tokens = items[index], prompts[index]
            cached = len(tokens) - len(starts[index][1]) if engine.prompt_cache is not None else None
            reader = LogprobReader(engine.tokenizer, item.top_logprobs or 0) if item.logprobs else None
            sequence = _Sequence(len(tokens), cached, engine.tokenizer.detokenizer, reader)
            entries[uid] = _Entry(index, sequence, StopMatcher(item.stop_list()))
        active = set(uids)
        while active and not cancel.cancelled:
            responses = generator.next_generated()
            if not responses:
                break
            for response in responses:
                entry = entries[response.uid]
                if response.uid not in active:
                    continue
                text, read = entry.sequence.read(response)
                if read:
                    entry.logprobs.extend(read)
                emit, stopped = entry.stopper.feed(text)
                entry.text.append(emit)
                if stopped:
                    entry.finish_reason = "stop"
                    active.discard(response.uid)
                    for cache, tokens in generator.remove([response.uid], return_prompt_caches=True).values():
                        _store(engine, cache, tokens)
                elif response.finish_reason is not None:
                    entry.finish_reason = response.finish_reason
                    entry.text.append(entry.stopper.flush())
                    active.discard(response.uid)
                    _store(engine, response.prompt_cache, response.all_tokens)
    finally:
        generator.close()
    results: list[ChatResult] = [ChatResult() for _ in items]
    for entry in entries.values():
        results[entry.index] = ChatResult(
            text="".join(entry.text),
            logprobs=entry.logprobs if entry.sequence.reader is not None else None,
            finish_reason=entry.finish_reason or "length",
            usage=entry.sequence.usage(),
        )
    return results


# -- continuous batching ---------------------------------------------------------------------------------------------


class _Pipe:
    """One request's deltas from the worker thread to its consumer: a deque, and a wake-up only while it waits.

    The scheme of heylook_core's ``ModelWorker.stream`` hand-off, without its back-pressure (the batch does not wait
    for one slow client; its tokens wait in memory). The consumer registers a future in ``waiters`` before it looks
    at the deque a last time and sleeps; the worker, after appending, pops that future (if any) to wake it. As in the
    core, the consumer is woken for each item it waits for: reading on a timer was slower on MLX.
    """

    __slots__ = ("items", "waiters")

    def __init__(self) -> None:
        self.items: deque[Delta | BaseException] = deque()
        self.waiters: list[asyncio.Future[None]] = []

    def put(self, item: Delta | BaseException) -> asyncio.Future[None] | None:
        """Append ``item`` (worker thread); the consumer's future to wake, if it waits for this item."""
        self.items.append(item)
        if not self.waiters:
            return None
        try:
            return self.waiters.pop()
        except IndexError:  # the consumer took it back: it saw the item itself
            return None

    async def get(self, loop: asyncio.AbstractEventLoop) -> Delta | BaseException:
        items = self.items
        while not items:
            waiter = loop.create_future()
            self.waiters.append(waiter)
            try:
                if not items:  # (an item appended before the worker could see the waiter is seen here)
                    await waiter
            finally:
                with contextlib.suppress(ValueError):
                    self.waiters.remove(waiter)
        return items.popleft()


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


def _wake_all(waiters: list[asyncio.Future[None]]) -> None:
    for waiter in waiters:
        _wake(waiter)


@dataclass(eq=False)
class _Seat:
    """One streamed request in the continuous batch."""

    request: ChatRequest | CompletionRequest
    make_tokens: Callable[[], list[int]]
    cancel: CancelToken
    pipe: _Pipe = field(default_factory=_Pipe)
    sequence: _Sequence | None = None


_Out = list[tuple[_Seat, "Delta | BaseException"]]


class Batcher:
    """Continuous batching of one text model's concurrent requests, up to ``size`` at once.

    :meth:`generate` is called on the event loop; the generator lives on the model's worker thread, driven by one
    task per busy period that runs :meth:`_slice` there until no request is left.
    """

    def __init__(
        self,
        engine: TextEngine,
        worker: ModelWorker,
        size: int,
        wrap_error: Callable[[Exception], HeylookError],
        stall_timeout: float | None = None,
    ) -> None:
        self.engine = engine
        self.worker = worker
        self.size = size
        self.wrap_error = wrap_error
        self.stall_timeout = stall_timeout
        self.failure: str | None = None  # why the batch wedged; the router then reloads the model
        self._incoming: deque[_Seat] = deque()  # appended on the event loop, taken on the worker thread
        self._open: set[_Seat] = set()  # event loop: seats whose stream has not ended
        self._driver: asyncio.Task[None] | None = None
        self._closed = False
        # worker thread only
        self._generator: BatchGenerator | None = None
        self._samplers = Samplers()
        self._seats: dict[int, _Seat] = {}

    # -- event loop side ---------------------------------------------------------------------------------------------

    async def generate(
        self,
        make_tokens: Callable[[], list[int]],
        request: ChatRequest | CompletionRequest,
        cancel: CancelToken,
    ) -> AsyncIterator[Delta]:
        """The deltas of one request, decoded with the others in flight; ``make_tokens`` runs on the worker."""
        if self._closed:
            raise ServiceUnavailableError(f"model '{self.engine.model_id}' is unloading; retry", retry_after=1)
        loop = asyncio.get_running_loop()
        seat = _Seat(request, make_tokens, cancel)
        self._open.add(seat)
        self._incoming.append(seat)
        if self._driver is None:
            self._driver = loop.create_task(self._drive(loop), name=f"heylook-batch-{self.engine.model_id}")
        items, get = seat.pipe.items, seat.pipe.get
        try:
            while True:
                item = items.popleft() if items else await get(loop)
                if isinstance(item, BaseException):
                    raise item
                yield item
                if item.finish_reason is not None:
                    return
        finally:
            self._open.discard(seat)
            cancel.cancel()  # a consumer that stopped early: the worker drops the sequence at its next step

    async def _drive(self, loop: asyncio.AbstractEventLoop) -> None:
        try:
            while not self._closed:
                call = self.worker.call(self._slice, loop)
                try:
                    active = await (asyncio.wait_for(call, self.stall_timeout) if self.stall_timeout else call)
                except asyncio.TimeoutError:
                    self.failure = f"its batch produced nothing for {self.stall_timeout:g} s (stall_timeout_s)"
                    logger.error("model '%s': %s; the next request reloads it", self.engine.model_id, self.failure)
                    self._fail(WorkerFailedError(f"model '{self.engine.model_id}' failed: {self.failure}"))
                    return
                except HeylookError as error:
                    self._fail(error)
                    return
                except Exception as error:
                    self._fail(self.wrap_error(error))
                    return
                if not active and not self._incoming:
                    return
        finally:
            self._driver = None

    def _fail(self, error: BaseException) -> None:
        self._incoming.clear()
        for seat in list(self._open):
            waiter = seat.pipe.put(error)
            if waiter is not None:
                _wake(waiter)

    def close(self) -> None:
        """The model is unloading: requests still open fail, new ones are refused."""
        self._closed = True
        self._fail(ServiceUnavailableError(f"model '{self.engine.model_id}' was unloaded; retry", retry_after=1))

    # -- worker thread side ------------------------------------------------------------------------------------------

    def _slice(self, loop: asyncio.AbstractEventLoop) -> int:
        """Admit, step and hand off for up to ``SLICE_S``; returns how many sequences are still running."""
        deadline = time.perf_counter() + SLICE_S
        try:
            while True:
                out: _Out = []
                self._admit(out)
                self._leave(out)
                if not self._seats:
                    self._send(loop, out)
                    self.reset()
                    return 0
                assert self._generator is not None
                _, responses = self._generator.next()
                for response in responses:
                    self._emit(response, out)
                self._send(loop, out)
                if time.perf_counter() >= deadline:
                    return len(self._seats)
        except BaseException:
            self.reset()
            raise

    @staticmethod
    def _send(loop: asyncio.AbstractEventLoop, out: _Out) -> None:
        """Hand a step's deltas over, waking the event loop once for the consumers that wait for one of them."""
        waiters = []
        for seat, item in out:
            waiter = seat.pipe.put(item)
            if waiter is not None:
                waiters.append(waiter)
        if waiters:
            try:
                loop.call_soon_threadsafe(_wake_all, waiters)
            except RuntimeError:  # the loop is closed: the server is stopping and nobody reads
                pass

    def _admit(self, out: _Out) -> None:
        engine = self.engine
        new: list[tuple[_Seat, list[int], list[Any], list[int], int, list[Any]]] = []
        while self._incoming:
            seat = self._incoming.popleft()
            if seat.cancel.cancelled:  # stopped or gone before it started
                if not seat.cancel.gone:
                    out.append((seat, Delta(finish_reason="stop", usage=Usage())))
                continue
            logprobs, top_logprobs, param = reading(seat.request)
            try:
                tokens = seat.make_tokens()
                limit = seat.request.max_tokens or engine.config.max_tokens_default
                engine._check_length(tokens, limit, param)
                processors = processors_for(seat.request, engine.vocab_size)
                cache, rest = _fetch(engine, tokens)
            except HeylookError as error:
                out.append((seat, error))
                continue
            except Exception as error:
                out.append((seat, self.wrap_error(error)))
                continue
            reader = LogprobReader(engine.tokenizer, top_logprobs) if logprobs else None
            cached = len(tokens) - len(rest) if engine.prompt_cache is not None else None
            seat.sequence = _Sequence(len(tokens), cached, engine.tokenizer.detokenizer, reader)
            new.append((seat, tokens, cache, rest, limit, processors))
        if not new:
            return
        if self._generator is None:
            self._generator = _generator(engine, self.size)
            self._samplers = Samplers()
        uids = self._generator.insert(
            [rest for _, _, _, rest, _, _ in new],
            max_tokens=[limit for *_, limit, _ in new],
            caches=[cache for _, _, cache, _, _, _ in new],
            all_tokens=[tokens[: len(tokens) - len(rest)] for _, tokens, _, rest, _, _ in new],
            samplers=[self._samplers(seat.request) for seat, *_ in new],
            logits_processors=[processors for *_, processors in new],
        )
        for uid, (seat, *_) in zip(uids, new, strict=True):
            self._seats[uid] = seat

    def _leave(self, out: _Out) -> None:
        """Take out the sequences whose request was stopped (ended with its usage) or whose client went away."""
        done = [uid for uid, seat in self._seats.items() if seat.cancel.cancelled]
        if not done or self._generator is None:
            return
        caches = self._generator.remove(done, return_prompt_caches=True)
        for uid in done:
            seat = self._seats.pop(uid)
            sequence = seat.sequence
            assert sequence is not None
            if sequence.tokens and uid in caches:
                _store(self.engine, *caches[uid])
            if seat.cancel.gone:
                logger.info("model '%s': request cancelled after %d tokens", self.engine.model_id, sequence.tokens)
            else:
                out.append((seat, Delta(finish_reason="stop", usage=sequence.usage())))

    def _emit(self, response: Any, out: _Out) -> None:
        seat = self._seats.get(response.uid)
        if seat is None:
            return
        sequence = seat.sequence
        assert sequence is not None
        text, entries = sequence.read(response)
        if text or entries:
            out.append((seat, Delta(text=text, logprobs=entries)))
        if response.finish_reason is not None:
            del self._seats[response.uid]
            _store(self.engine, response.prompt_cache, response.all_tokens)
            out.append((seat, Delta(finish_reason=response.finish_reason, usage=sequence.usage())))

    def reset(self) -> None:
        """Drop the generator and its sequences (worker thread: after a failure, at the end of a busy period, at
        unload)."""
        generator, self._generator = self._generator, None
        self._seats.clear()
        if generator is not None:
            try:
                generator.close()
            except Exception:
                logger.exception("model '%s': closing the batch generator raised", self.engine.model_id)
