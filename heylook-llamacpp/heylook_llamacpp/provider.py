"""The llama.cpp engine: one ``llama_cpp.Llama`` per configured model, driven from the model's worker thread.

Generation goes through llama-cpp-python's own high-level APIs (``create_chat_completion(stream=True)`` and
``create_completion(stream=True)``): the chat handler renders the template (from the GGUF, the config's
``chat_format`` / ``chat_template``, or the request's ``chat_template``), applies grammars and parses tool calls.
This module adds what heylook promises on top:

* exact ``usage`` while streaming: the instance's ``generate`` is wrapped to count the prompt, the cached prefix
  that llama-cpp-python reuses from the previous request, and every sampled token (the end-of-generation token is
  not counted, as in llama-cpp-python's own non-streamed usage);
* cancellation: the same wrapper ends generation at the next token once the client has gone;
* reproducible seeds: a request with a ``seed`` has its whole prompt evaluated, never a cached prefix (the logits
  after a reused prefix round differently from those of a whole-prompt batch, enough to tip a sampled token and
  even a greedy one on a near tie), so the same request gives the same text whatever came before it;
* stop sequences are cut by the core's generation service, which ends generation here through ``cancel``; the
  stop text is never sent and ``finish_reason`` is ``stop``;
* ``response_format`` through GBNF grammars built from JSON schemas (cached per schema);
* tools rendered by the model's own Jinja template (the GGUF's or the config's ``chat_template``), its calls read
  from the output by the core's parser (:mod:`heylook_core.toolcalls`, format detected from the template), and
  ``tool_choice`` "required" or a named function enforced with a grammar of one call in that format.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import llama_cpp
import numpy as np
from llama_cpp import llama_chat_format
from llama_cpp.llama_grammar import JSON_GBNF, LlamaGrammar, json_schema_to_gbnf

from heylook_core import (
    BadRequestError,
    CancelToken,
    ChatMessage,
    ChatRequest,
    CompletionRequest,
    Delta,
    EmbeddingRequest,
    EmbeddingResult,
    HiddenStates,
    HiddenStatesRequest,
    ProviderError,
    ThreadedProvider,
    TokenLogprob,
    TopLogprob,
    Usage,
    detect_format,
    forced_call,
    template_supports_tools,
)
from heylook_llamacpp import default_model, engine_log
from heylook_llamacpp.build import build_description
from heylook_llamacpp.config import LlamaCppConfig, default_threads

logger = logging.getLogger(__name__)
# why a model whose Jinja template renders no tools refuses them (its card, and a request that reaches the engine)
NO_TOOLS = (
    "its chat template does not render tools; set a chat_template that does, or chat_format = 'chatml-function-calling'"
)

POOLING = {
    None: llama_cpp.LLAMA_POOLING_TYPE_UNSPECIFIED,
    "mean": llama_cpp.LLAMA_POOLING_TYPE_MEAN,
    "cls": llama_cpp.LLAMA_POOLING_TYPE_CLS,
    "last": llama_cpp.LLAMA_POOLING_TYPE_LAST,
    "rank": llama_cpp.LLAMA_POOLING_TYPE_RANK,
    "none": llama_cpp.LLAMA_POOLING_TYPE_NONE,
}

# llama.cpp's own sampling defaults, used for what neither the request nor the model's defaults set.
DEFAULT_SAMPLING = {"temperature": 0.8, "top_p": 0.95, "top_k": 40, "min_p": 0.05}


class _Meter:
    """What the wrapped ``generate`` saw during one generation."""

    __slots__ = ("cancel", "fresh", "prompt_tokens", "cached_tokens", "sampled", "eog")

    def __init__(self, cancel: CancelToken, *, fresh: bool = False) -> None:
        self.cancel = cancel
        self.fresh = fresh  # evaluate the whole prompt (no cached prefix): the request has a seed
        self.prompt_tokens = 0
        self.cached_tokens = 0
        self.sampled = 0
        self.eog = False

    def usage(self) -> Usage:
        return Usage(self.prompt_tokens, self.sampled - (1 if self.eog else 0), self.cached_tokens)


class LlamaCppProvider(ThreadedProvider[LlamaCppConfig]):
    def __init__(self, model_id: str, config: LlamaCppConfig) -> None:
        super().__init__(model_id, config)
        self.llm: Any = None
        self.path: Path | None = None
        self.n_ctx_train = 0
        self._meter: _Meter | None = None
        self._grammars: dict[str, Any] = {}
        self._templates: dict[str, Any] = {}
        self.template: str | None = None  # the Jinja template chats render with (None: a chat_format handler)
        self.tool_parser: str | None = None  # the core reads tool calls in this format out of the output

    # -- loading ---------------------------------------------------------------------------------------------------

    def _model_path(self) -> Path:
        reference = self.config.model_path
        if reference.startswith("pypi:"):
            return default_model.resolve(self.model_id, reference)
        path = Path(os.path.expanduser(reference))
        if not path.is_file():
            raise ProviderError(
                f"model '{self.model_id}': GGUF file not found: {path} (set [models.config] model_path to a .gguf file)"
            )
        with path.open("rb") as handle:
            magic = handle.read(4)
        if magic != b"GGUF":
            raise ProviderError(f"model '{self.model_id}': {path} is not a GGUF file (it starts with {magic!r})")
        return path

    def load_sync(self) -> None:
        path = self._model_path()
        self.path = path
        config = self.config
        try:
            probe = llama_cpp.Llama(model_path=str(path), vocab_only=True, n_ctx=64, verbose=False)
        except ValueError as error:
            raise ProviderError(f"model '{self.model_id}': llama.cpp cannot read {path}: {error}") from error
        architecture = probe.metadata.get("general.architecture", "")
        self.n_ctx_train = int(probe.metadata.get(f"{architecture}.context_length", 0) or 0)
        gguf_template = probe.metadata.get("tokenizer.chat_template") or None
        has_template = bool(gguf_template)
        del probe
        if self.n_ctx_train and config.n_ctx > self.n_ctx_train:
            raise ProviderError(
                f"model '{self.model_id}': n_ctx = {config.n_ctx} is larger than the context this model was trained "
                f"for ({self.n_ctx_train} tokens) in {path}; lower n_ctx"
            )
        chat_handler = None
        if config.mmproj is not None:
            mmproj = Path(os.path.expanduser(config.mmproj))
            if not mmproj.is_file():
                raise ProviderError(f"model '{self.model_id}': mmproj file not found: {mmproj}")
            chat_handler = llama_chat_format.MTMDChatHandler(clip_model_path=str(mmproj), verbose=False)
        chat_format = config.chat_format
        if chat_format is None and config.chat_template is None and not has_template and not config.embedding:
            logger.warning(
                "model '%s': %s has no chat template and no chat_format is set; llama-cpp-python falls back to "
                "'llama-2'",
                self.model_id,
                path,
            )
        n_threads, n_threads_batch, why = default_threads(config)
        engine_log.engine_loading(self.model_id, build_description())
        try:
            self.llm = llama_cpp.Llama(
                model_path=str(path),
                n_ctx=config.n_ctx,
                n_gpu_layers=config.n_gpu_layers,
                n_threads=n_threads,
                n_threads_batch=n_threads_batch,
                n_batch=config.n_batch,
                n_ubatch=config.n_batch,
                chat_format=chat_format,
                chat_handler=chat_handler,
                embedding=config.embedding,
                pooling_type=POOLING[config.pooling],
                flash_attn=config.flash_attn,
                use_mmap=config.use_mmap,
                seed=config.seed if config.seed is not None else llama_cpp.LLAMA_DEFAULT_SEED,
                logits_all=config.logprobs,
                verbose=False,
            )
        except ValueError as error:
            engine_log.engine_unloaded(self.model_id)
            raise ProviderError(
                f"model '{self.model_id}': llama.cpp failed to load {path} with n_ctx = {config.n_ctx}: {error} "
                "(not enough memory for this context? lower n_ctx)"
            ) from error
        if config.chat_template is not None:
            self.llm.chat_handler = self._template_handler(config.chat_template)
        if config.chat_format is None and config.mmproj is None:
            self.template = config.chat_template or gguf_template
            if template_supports_tools(self.template):  # a template with tools but no known call tags: Hermes's
                self.tool_parser = detect_format(self.template) or "hermes"
        self._install_meter()
        logger.info(
            "model '%s' loaded from %s (n_ctx %d, %d threads, %d for prompt processing: %s)",
            self.model_id,
            path,
            self.llm.n_ctx(),
            self.llm.n_threads,
            self.llm.n_threads_batch,
            why,
        )

    def unload_sync(self) -> None:
        llm, self.llm = self.llm, None
        self._grammars.clear()
        self._templates.clear()
        if llm is not None:
            llm.close()
        engine_log.engine_unloaded(self.model_id)

    def refused_parameters(self) -> dict[str, str]:
        """A Jinja template that renders no tools refuses them (its card then offers none)."""
        if self.template is not None and not template_supports_tools(self.template):
            return {"tools": NO_TOOLS, "tool_choice": NO_TOOLS}
        return {}

    def info(self) -> dict[str, Any]:
        facts: dict[str, Any] = {"model_path": str(self.path) if self.path else self.config.model_path}
        if self.llm is not None:
            facts["context_length"] = self.llm.n_ctx()
            if self.config.embedding:  # vectors are normalised (embed_sync), one per input, of the model's width
                facts["embedding_dimensions"] = self.llm.n_embd()
                facts["embedding_normalized"] = True
        return facts

    def _install_meter(self) -> None:
        """Wrap ``Llama.generate`` (on this instance) to count tokens and to stop on cancellation."""
        llm = self.llm
        original = llm.generate
        vocab = llm._model.vocab
        is_eog = llama_cpp.llama_vocab_is_eog

        def generate(tokens: Any, *args: Any, **kwargs: Any) -> Iterator[int]:
            meter = self._meter
            tokens = list(tokens)
            if meter is not None:
                if meter.fresh:
                    llm.reset()
                meter.prompt_tokens = len(tokens)
                meter.cached_tokens = _reused_prefix(llm, tokens)
            for token in original(tokens, *args, **kwargs):
                if meter is not None:
                    meter.sampled += 1
                    if is_eog(vocab, token):
                        meter.eog = True
                    if meter.cancel.cancelled:
                        return
                yield token

        llm.generate = generate

    # -- helpers ---------------------------------------------------------------------------------------------------

    def _template_handler(self, template: str) -> Any:
        handler = self._templates.get(template)
        if handler is None:
            llm = self.llm
            eos = llm._model.token_get_text(llm.token_eos()) if llm.token_eos() != -1 else ""
            bos = llm._model.token_get_text(llm.token_bos()) if llm.token_bos() != -1 else ""
            try:
                formatter = llama_chat_format.Jinja2ChatFormatter(
                    template=template, eos_token=eos, bos_token=bos, stop_token_ids=[llm.token_eos()]
                )
            except Exception as error:  # jinja2 syntax errors
                raise BadRequestError(f"chat_template does not compile: {error}", param="chat_template") from error
            handler = formatter.to_chat_handler()
            if len(self._templates) > 16:
                self._templates.clear()
            self._templates[template] = handler
        return handler

    def _grammar(self, key: str, build: Any) -> Any:
        grammar = self._grammars.get(key)
        if grammar is None:
            try:
                grammar = build()
            except Exception as error:
                raise BadRequestError(f"cannot build a grammar: {error}", param="response_format") from error
            if len(self._grammars) > 64:
                self._grammars.clear()
            self._grammars[key] = grammar
        return grammar

    def _request_grammar(self, request: ChatRequest | CompletionRequest) -> Any:
        extra = request.extra_params()
        if "grammar" in extra:
            text = extra["grammar"]
            if not isinstance(text, str) or not text.strip():
                raise BadRequestError("grammar must be a GBNF grammar string", param="grammar")
            return self._grammar("gbnf:" + text, lambda: LlamaGrammar.from_string(text, verbose=False))
        response_format = getattr(request, "response_format", None)
        if response_format is None or response_format.type == "text":
            return None
        if response_format.type == "json_object":
            return self._grammar("json", lambda: LlamaGrammar.from_string(JSON_GBNF, verbose=False))
        schema = json.dumps(response_format.json_schema.schema_, sort_keys=True)
        return self._grammar("schema:" + schema, lambda: LlamaGrammar.from_json_schema(schema, verbose=False))

    def _tool_grammar(self, request: ChatRequest) -> Any:
        """A grammar of exactly one call, in the template's format, for tool_choice "required" or a named tool."""
        choice = request.tool_choice
        tools = [tool.model_dump(exclude_none=True) for tool in request.tools or []]
        fmt = self.tool_parser
        shape = forced_call(tools, choice, fmt)
        if shape is None:
            raise BadRequestError(
                f"model '{self.model_id}': tool_choice {json.dumps(choice)} needs a grammar of a call in the model's "
                f"tool-call format ({fmt}), which heylook has for hermes, llama3 and mistral only; use 'auto'",
                param="tool_choice",
            )
        prefix, schema, suffix = shape
        if "grammar" in request.extra_params() or (
            request.response_format is not None and request.response_format.type != "text"
        ):
            raise BadRequestError(
                "tool_choice 'required' or a named function is enforced with a grammar; it cannot be combined with "
                "response_format or grammar",
                param="tool_choice",
            )
        key = json.dumps([prefix, schema, suffix], sort_keys=True)

        def build() -> Any:
            rules = json_schema_to_gbnf(json.dumps(schema)).replace("root ::=", "tool-call ::=", 1)
            head = f"root ::= {_gbnf_literal(prefix)} tool-call {_gbnf_literal(suffix)}\n"
            return LlamaGrammar.from_string(head + rules, verbose=False)

        return self._grammar("tool:" + key, build)

    def _sampling(self, request: ChatRequest | CompletionRequest) -> dict[str, Any]:
        def pick(name: str) -> Any:
            value = getattr(request, name)
            return DEFAULT_SAMPLING[name] if value is None else value

        seed = request.seed if request.seed is not None else self.config.seed
        return {
            "temperature": pick("temperature"),
            "top_p": pick("top_p"),
            "top_k": pick("top_k"),
            "min_p": pick("min_p"),
            "repeat_penalty": request.repetition_penalty if request.repetition_penalty is not None else 1.0,
            "presence_penalty": request.presence_penalty or 0.0,
            "frequency_penalty": request.frequency_penalty or 0.0,
            "seed": seed,
            "max_tokens": request.max_tokens,
            "grammar": self._request_grammar(request),
        }

    def _engine_errors(self, error: Exception) -> Exception:
        message = str(error)
        if "exceed context window" in message:
            return BadRequestError(
                f"model '{self.model_id}': the prompt does not fit its context of {self.llm.n_ctx()} tokens "
                f"({message})",
                param="messages",
                code="context_length_exceeded",
            )
        if isinstance(error, ValueError):
            return BadRequestError(f"model '{self.model_id}': {message}")
        return ProviderError(f"model '{self.model_id}': llama.cpp failed: {type(error).__name__}: {message}")

    def _run(self, chunks: Iterator[dict[str, Any]], cancel: CancelToken, meter: _Meter, chat: bool) -> Iterator[Delta]:
        """Turn llama-cpp-python chunks into deltas. Stop sequences are the core's: it cuts the text and, through
        ``cancel``, ends generation here with the usage."""
        finish = "length"
        started: set[int] = set()
        try:
            for chunk in chunks:
                if cancel.cancelled:  # the client went away, or the core reached a stop sequence
                    finish = "stop"
                    break
                choice = chunk["choices"][0]
                if chat:
                    delta = choice.get("delta") or {}
                    text = delta.get("content") or ""
                    tool_calls = delta.get("tool_calls")
                    logprobs = _chat_logprobs(choice.get("logprobs"))
                else:
                    text = choice.get("text") or ""
                    tool_calls = None
                    logprobs = _completion_logprobs(choice.get("logprobs"))
                if choice.get("finish_reason") is not None:
                    finish = choice["finish_reason"]
                if text or tool_calls or logprobs:
                    yield Delta(
                        text=text, tool_calls=_plain(tool_calls, started) if tool_calls else None, logprobs=logprobs
                    )
        except (ValueError, RuntimeError) as error:
            raise self._engine_errors(error) from error
        finally:
            self._meter = None
            close = getattr(chunks, "close", None)
            if close is not None:
                close()
        yield Delta(finish_reason=finish, usage=meter.usage())

    # -- operations ------------------------------------------------------------------------------------------------

    def chat_sync(self, request: ChatRequest, cancel: CancelToken) -> Iterator[Delta]:
        llm = self.llm
        kwargs = self._sampling(request)
        meter = _Meter(cancel, fresh=request.seed is not None)
        messages = [_message(message) for message in request.messages]
        if request.logprobs:
            kwargs["logprobs"] = True
            kwargs["top_logprobs"] = request.top_logprobs or 0
        if request.tools and self.template is not None:  # the model's Jinja template renders them
            if request.tool_choice != "none":
                if not template_supports_tools(self.template):
                    raise BadRequestError(f"model '{self.model_id}': {NO_TOOLS}", param="tools")
                kwargs["tools"] = [tool.model_dump(exclude_none=True) for tool in request.tools]
                if request.tool_choice == "required" or isinstance(request.tool_choice, dict):
                    kwargs["grammar"] = self._tool_grammar(request)
                elif request.tool_choice is not None:
                    kwargs["tool_choice"] = request.tool_choice
        elif request.tools:  # a chat_format handler that renders and parses tools itself
            kwargs["tools"] = [tool.model_dump(exclude_none=True) for tool in request.tools]
            if request.tool_choice is not None:
                kwargs["tool_choice"] = request.tool_choice
        extra = request.extra_params()
        template_kwargs: dict[str, Any] = {}
        if request.enable_thinking is not None:
            template_kwargs["enable_thinking"] = request.enable_thinking
        if "chat_template" in extra or template_kwargs:
            if "chat_template" in extra:
                if not isinstance(extra["chat_template"], str):
                    raise BadRequestError("chat_template must be a string", param="chat_template")
                handler = self._template_handler(extra["chat_template"])
            else:
                handler = (
                    llm.chat_handler
                    or llm._chat_handlers.get(llm.chat_format)
                    or llama_chat_format.get_chat_completion_handler(llm.chat_format)
                )

            def create() -> Any:
                return handler(llama=llm, messages=messages, stream=True, stop=[], **kwargs, **template_kwargs)
        else:

            def create() -> Any:
                return llm.create_chat_completion(messages=messages, stream=True, stop=[], **kwargs)

        self._meter = meter
        try:
            chunks = create()
        except (ValueError, RuntimeError) as error:
            self._meter = None
            raise self._engine_errors(error) from error
        yield from self._run(iter(chunks), cancel, meter, chat=True)

    def complete_sync(
        self, request: CompletionRequest, prompt: str | list[int], cancel: CancelToken
    ) -> Iterator[Delta]:
        llm = self.llm
        kwargs = self._sampling(request)
        meter = _Meter(cancel, fresh=request.seed is not None)
        if request.logprobs is not None:
            kwargs["logprobs"] = request.logprobs
        self._meter = meter
        try:
            chunks = llm.create_completion(prompt=prompt, stream=True, stop=[], **kwargs)
        except (ValueError, RuntimeError) as error:
            self._meter = None
            raise self._engine_errors(error) from error
        yield from self._run(iter(chunks), cancel, meter, chat=False)

    def tokenize_sync(self, text: str, add_special_tokens: bool) -> list[int]:
        return list(self.llm.tokenize(text.encode("utf-8"), add_bos=add_special_tokens, special=True))

    def _texts(self, inputs: list[str] | list[list[int]]) -> list[str]:
        return [
            item if isinstance(item, str) else self.llm.detokenize(item).decode("utf-8", "replace") for item in inputs
        ]

    def embed_sync(self, request: EmbeddingRequest, inputs: list[str] | list[list[int]]) -> EmbeddingResult:
        texts = self._texts(inputs)
        # Per-token vectors (pooling "none", or unset on a GGUF that names no pooling): mean-pool, then normalise.
        if self.config.pooling == "none" or self.llm.pooling_type() == llama_cpp.LLAMA_POOLING_TYPE_NONE:
            vectors, count = [], 0
            for text in texts:
                rows = np.asarray(self._token_states(text), dtype=np.float64)
                count += rows.shape[0]
                mean = rows.mean(axis=0)
                vectors.append((mean / (float(np.linalg.norm(mean)) or 1.0)).tolist())
        else:
            try:
                vectors, count = self.llm.embed(texts, normalize=True, truncate=True, return_count=True)
            except (ValueError, RuntimeError) as error:
                raise self._engine_errors(error) from error
        return EmbeddingResult(vectors=[list(map(float, vector)) for vector in vectors], prompt_tokens=int(count))

    def _token_states(self, text: str) -> list[list[float]]:
        # One input per call: llama-cpp-python 0.3.36 reads the per-token rows of a second sequence in a batch from
        # the wrong offset (it advances by tokens, not by tokens * n_embd), so only the first sequence is right.
        try:
            return self.llm.embed([text], normalize=False, truncate=True)[0]
        except (ValueError, RuntimeError) as error:
            raise self._engine_errors(error) from error

    def hidden_states_sync(self, request: HiddenStatesRequest) -> list[HiddenStates]:
        if request.layer != -1:
            raise BadRequestError(
                f"model '{self.model_id}' gives only layer -1 (the last layer's output after the final norm, per "
                f"token); layer {request.layer} is not available from llama.cpp",
                param="layer",
            )
        if request.apply_chat_template:
            raise BadRequestError(
                f"model '{self.model_id}' does not apply chat templates for hidden states; send the formatted text",
                param="apply_chat_template",
            )
        texts = request.inputs()
        if request.max_length is not None:
            texts = [
                self.llm.detokenize(self.llm.tokenize(text.encode("utf-8"))[: request.max_length]).decode(
                    "utf-8", "replace"
                )
                for text in texts
            ]
        per_input = [self._token_states(text) for text in texts]
        results = []
        for rows in per_input:
            array = np.asarray(rows, dtype="<f4")
            results.append(HiddenStates(data=array.tobytes(), shape=(array.shape[0], array.shape[1]), layer=-1))
        return results


def _reused_prefix(llm: Any, tokens: list[int]) -> int:
    """How many prompt tokens llama-cpp-python will take from the KV cache (mirrors ``Llama.generate``)."""
    n = llm.n_tokens
    if n <= 0:
        return 0
    previous = llm.input_ids[:n]
    size = min(n, len(tokens))
    if size == 0:
        return 0
    mismatch = np.nonzero(previous[:size] != np.asarray(tokens[:size], dtype=previous.dtype))[0]
    longest = int(mismatch[0]) if mismatch.size else size
    if longest == len(tokens):
        return longest - 1
    return longest


def _message(message: ChatMessage) -> dict[str, Any]:
    data: dict[str, Any] = {"role": "system" if message.role == "developer" else message.role}
    if isinstance(message.content, list):
        data["content"] = [part.model_dump(exclude_none=True) for part in message.content]
    else:
        data["content"] = message.content
    if message.name is not None:
        data["name"] = message.name
    if message.tool_calls:  # arguments as objects, as templates (Qwen's, Llama's) expect; a JSON string otherwise
        data["tool_calls"] = [call.model_dump() for call in message.tool_calls]
        for call in data["tool_calls"]:
            try:
                arguments = json.loads(call["function"]["arguments"])
            except (TypeError, ValueError):
                continue
            if isinstance(arguments, dict):
                call["function"]["arguments"] = arguments
    if message.tool_call_id is not None:
        data["tool_call_id"] = message.tool_call_id
    return data


def _gbnf_literal(text: str) -> str:
    if not text:
        return '""'
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _plain(tool_calls: list[dict[str, Any]], started: set[int]) -> list[dict[str, Any]]:
    """OpenAI streaming fragments: the id, type and name only in the first fragment of each call."""
    fragments = []
    for position, call in enumerate(tool_calls):
        function = call.get("function") or {}
        index = call.get("index", position)
        fragment: dict[str, Any] = {"index": index, "function": {"arguments": function.get("arguments") or ""}}
        if index not in started:
            started.add(index)
            fragment["id"] = call.get("id") or f"call_{index}"
            fragment["type"] = "function"
            fragment["function"]["name"] = function.get("name") or ""
        fragments.append(fragment)
    return fragments


def _token_bytes(token: str) -> list[int]:
    return list(token.encode("utf-8", "replace"))


def _chat_logprobs(logprobs: dict[str, Any] | None) -> list[TokenLogprob] | None:
    if not logprobs or not logprobs.get("content"):
        return None
    return [
        TokenLogprob(
            token=str(item["token"]),
            logprob=float(item["logprob"]),
            bytes=_token_bytes(str(item["token"])),
            top_logprobs=[
                TopLogprob(
                    token=str(top["token"]), logprob=float(top["logprob"]), bytes=_token_bytes(str(top["token"]))
                )
                for top in item.get("top_logprobs") or []
            ],
        )
        for item in logprobs["content"]
    ]


def _completion_logprobs(logprobs: dict[str, Any] | None) -> list[TokenLogprob] | None:
    if not logprobs or not logprobs.get("tokens"):
        return None
    tops = logprobs.get("top_logprobs") or [None] * len(logprobs["tokens"])
    return [
        TokenLogprob(
            token=str(token),
            logprob=float(logprob),
            bytes=_token_bytes(str(token)),
            top_logprobs=[
                TopLogprob(token=str(name), logprob=float(value), bytes=_token_bytes(str(name)))
                for name, value in (top or {}).items()
            ],
        )
        for token, logprob, top in zip(logprobs["tokens"], logprobs["token_logprobs"], tops, strict=False)
    ]
