"""The mlx-lm engine: chat and completions through ``stream_generate``, hidden states of a chosen decoder layer, and
prompt cache reuse across the turns of a conversation. Batched generation (the batch endpoint, ``concurrency``) is in
:mod:`heylook_mlx.batching`.

Everything here runs on the model's one worker thread (see :class:`heylook_core.ThreadedProvider`).

Prompt cache: after a generation, the KV cache is stored as a snapshot keyed by the exact tokens it holds (prompt
plus the generated tokens the model processed) in mlx-lm's ``LRUPromptCache``. A later request takes a deep copy of
the snapshot sharing the longest prefix with its own prompt, trimmed to that common prefix, so it never sees
tokens it did not send; the snapshot itself is never changed.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import mlx.core as mx
import mlx.nn as nn
import numpy as np
from mlx_lm import load as mlx_load
from mlx_lm import stream_generate
from mlx_lm._version import __version__ as mlx_lm_version
from mlx_lm.models.cache import (
    KVCache,
    LRUPromptCache,
    RotatingKVCache,
    can_trim_prompt_cache,
    make_prompt_cache,
    trim_prompt_cache,
)
from mlx_lm.utils import _get_classes

from heylook_core import (
    BadRequestError,
    CancelToken,
    ChatMessage,
    ChatRequest,
    CompletionRequest,
    Delta,
    HiddenStates,
    HiddenStatesRequest,
    TaggedFormat,
    Usage,
    delegated_format,
    detect_format,
    template_supports_tools,
)
from heylook_mlx.config import MLXConfig
from heylook_mlx.sampling import LogprobReader, processors_for, reading, sampler_for, seed

logger = logging.getLogger(__name__)


def message_dicts(messages: list[ChatMessage]) -> list[dict[str, Any]]:
    """Chat messages as the plain dicts a Hugging Face chat template expects (text content only)."""
    result = []
    for message in messages:
        item: dict[str, Any] = {"role": message.role, "content": message.text()}
        if message.name:
            item["name"] = message.name
        if message.tool_calls:  # arguments as objects, as templates (Qwen's, Llama's) expect
            item["tool_calls"] = [
                {
                    "id": call.id,
                    "type": "function",
                    "function": {"name": call.function.name, "arguments": _arguments(call.function.arguments)},
                }
                for call in message.tool_calls
            ]
        if message.tool_call_id is not None:
            item["tool_call_id"] = message.tool_call_id
        result.append(item)
    return result


def _arguments(text: str) -> Any:
    try:
        value = json.loads(text)
    except ValueError:
        return text
    return value if isinstance(value, dict) else text


# why a model whose chat template renders no tools refuses them (its card, and a request that reaches the engine)
NO_TOOLS = "its chat template does not render tools; use a model (or a tokenizer_config.json chat_template) that does"

# mlx-lm's tool parsers that the core reads itself (streaming, with drift repair)
_CORE_FORMATS = {"json_tools": "hermes", "mistral": "mistral"}


def tool_format_of(tokenizer: Any) -> str | TaggedFormat | None:
    """The tool-call format of a model's output: the core's parser where it has the format, else mlx-lm's own."""
    template = getattr(tokenizer, "chat_template", None)
    if not isinstance(template, str) or not template_supports_tools(template):
        return None
    inner = getattr(tokenizer, "_tokenizer", None)
    kind = (getattr(inner, "init_kwargs", None) or {}).get("tool_parser_type")
    if kind in _CORE_FORMATS:
        return _CORE_FORMATS[kind]
    parse = getattr(tokenizer, "tool_parser", None)
    start = getattr(tokenizer, "tool_call_start", None)
    if kind is not None and callable(parse) and start:
        return delegated_format(f"mlx-lm:{kind}", start, getattr(tokenizer, "tool_call_end", "") or "", parse)
    return detect_format(template) or "hermes"


def read_config(path: Path) -> dict[str, Any]:
    config_file = path / "config.json"
    if not config_file.is_file():
        raise FileNotFoundError(f"no config.json in model folder '{path}'")
    return json.loads(config_file.read_text(encoding="utf-8"))


def check_architecture(path: Path) -> None:
    """Raise a clear error before loading weights when mlx-lm has no implementation of the folder's model type."""
    config = read_config(path)
    model_type = config.get("model_type")
    if not model_type:
        raise ValueError(f"config.json in '{path}' names no model_type")
    try:
        _get_classes(config)
    except ValueError:
        raise ValueError(
            f"unsupported architecture: mlx-lm {mlx_lm_version} has no model type '{model_type}' (folder '{path}'); "
            "for a vision model set vision = true, for an encoder set embedding = true"
        ) from None


def resolve_model_path(value: str) -> str:
    """A local folder as an absolute path; an id that looks like ``owner/name`` is left to the Hugging Face cache."""
    path = Path(value).expanduser()
    if path.exists():
        if not path.is_dir():
            raise FileNotFoundError(f"model_path '{value}' is a file; point it at the model folder")
        return str(path.resolve())
    looks_local = value.startswith(("/", ".", "~")) or value.count("/") != 1
    if looks_local:
        raise FileNotFoundError(f"model folder '{value}' does not exist")
    return value


class TextEngine:
    """An mlx-lm model and tokenizer, with an optional draft model and a prompt cache."""

    def __init__(self, model_id: str, config: MLXConfig) -> None:
        self.model_id = model_id
        self.config = config
        path = resolve_model_path(config.model_path)
        adapter = None
        if config.adapter_path:
            adapter_path = Path(config.adapter_path).expanduser()
            if not adapter_path.is_dir():
                raise FileNotFoundError(f"adapter_path '{config.adapter_path}' is not a folder")
            adapter = str(adapter_path)
        if Path(path).is_dir():
            check_architecture(Path(path))
        self.model, self.tokenizer, self.model_config = mlx_load(path, adapter_path=adapter, return_config=True)
        if config.kv_bits is not None:
            head_dim = self._head_dim()
            if head_dim is not None and head_dim % config.kv_group_size:
                raise ValueError(
                    f"kv_group_size {config.kv_group_size} does not divide the model's attention head size {head_dim}; "
                    "use a group size that does (32, 64 or 128) or leave kv_bits unset"
                )
        self.draft_model = None
        if config.draft_model:
            self.draft_model, _ = mlx_load(resolve_model_path(config.draft_model))
        self.vocab_size = int(self.model_config.get("vocab_size") or len(self.tokenizer))
        self.prompt_cache = LRUPromptCache(max_size=config.prompt_cache_size) if config.prompt_cache_size else None
        self.context_length = self.model_config.get("max_position_embeddings")
        self.tool_parser = tool_format_of(self.tokenizer)

    def _head_dim(self) -> int | None:
        args = getattr(self.model, "args", None)
        head_dim = getattr(args, "head_dim", None)
        if head_dim is None and args is not None:
            hidden, heads = getattr(args, "hidden_size", None), getattr(args, "num_attention_heads", None)
            head_dim = hidden // heads if hidden and heads else None
        return head_dim

    def close(self) -> None:
        self.prompt_cache = None
        self.model = None
        self.draft_model = None
        mx.clear_cache()

    # -- prompts -------------------------------------------------------------------------------------------------

    def chat_tokens(self, request: ChatRequest) -> list[int]:
        if getattr(self.tokenizer, "chat_template", None) is None:
            raise BadRequestError(
                f"model '{self.model_id}' has no chat template; use /v1/completions or add one to its "
                "tokenizer_config.json",
                param="messages",
            )
        thinking = request.enable_thinking if request.enable_thinking is not None else self.config.enable_thinking
        extra: dict[str, Any] = {}
        if request.tools and request.tool_choice != "none":
            if self.tool_parser is None:
                raise BadRequestError(f"model '{self.model_id}': {NO_TOOLS}", param="tools")
            if request.tool_choice == "required" or isinstance(request.tool_choice, dict):
                raise BadRequestError(
                    f"model '{self.model_id}': MLX has no constrained decoding here, so tool_choice "
                    f"{json.dumps(request.tool_choice)} cannot be guaranteed; use 'auto'",
                    param="tool_choice",
                )
            extra["tools"] = [tool.model_dump(exclude_none=True) for tool in request.tools]
        try:
            text = self.tokenizer.apply_chat_template(
                message_dicts(request.messages),
                add_generation_prompt=True,
                enable_thinking=thinking,
                tokenize=False,
                **extra,
            )
        except Exception as error:  # jinja2 raises for conversations a template refuses
            raise BadRequestError(f"the chat template rejected the messages: {error}", param="messages") from error
        return list(self.tokenizer.encode(text, add_special_tokens=False))

    def prompt_tokens(self, prompt: str | list[int]) -> list[int]:
        if isinstance(prompt, str):
            return list(self.tokenizer.encode(prompt, add_special_tokens=True))
        bad = [token for token in prompt if not 0 <= token < self.vocab_size]
        if bad:
            raise BadRequestError(
                f"token id {bad[0]} is outside the vocabulary (0..{self.vocab_size - 1})", param="prompt"
            )
        return list(prompt)

    def tokenize(self, text: str, add_special_tokens: bool) -> list[int]:
        return list(self.tokenizer.encode(text, add_special_tokens=add_special_tokens))

    def _check_length(self, tokens: list[int], limit: int, param: str) -> None:
        if not tokens:
            raise BadRequestError("the prompt is empty", param=param)
        if self.context_length and len(tokens) + limit > self.context_length and self.config.max_kv_size is None:
            raise BadRequestError(
                f"the prompt has {len(tokens)} tokens and max_tokens is {limit}, more than model "
                f"'{self.model_id}''s context of {self.context_length}",
                param="max_tokens",
            )

    # -- prompt cache --------------------------------------------------------------------------------------------

    def _model_cache(self, model: Any) -> list[Any]:
        """The model's own cache, with plain KV caches made rotating when ``max_kv_size`` is set.

        ``make_prompt_cache`` ignores ``max_kv_size`` for models that define ``make_cache`` (llama does), so the
        window is applied here to every layer that would keep an unbounded cache.
        """
        size = self.config.max_kv_size
        cache = make_prompt_cache(model, max_kv_size=size)
        if size is None:
            return cache
        return [RotatingKVCache(max_size=size, keep=4) if type(entry) is KVCache else entry for entry in cache]

    def _new_cache(self) -> list[Any]:
        cache = self._model_cache(self.model)
        if self.draft_model is not None:
            cache += self._model_cache(self.draft_model)
        return cache

    def _fetch_cache(self, tokens: list[int]) -> tuple[list[Any], list[int]]:
        """A private cache holding a prefix of ``tokens``, and the tokens still to process (never empty)."""
        if self.prompt_cache is None:
            return self._new_cache(), tokens
        cache, rest = self.prompt_cache.fetch_nearest_cache(self.model_id, tokens)
        if cache is None:
            return self._new_cache(), tokens
        if not rest:  # the whole prompt is cached: step back one token so there is something to process
            if not can_trim_prompt_cache(cache):
                return self._new_cache(), tokens
            trim_prompt_cache(cache, 1)
            rest = tokens[-1:]
        return cache, list(rest)

    def _store_cache(self, cache: list[Any], tokens: list[int]) -> None:
        if self.prompt_cache is None or not cache:
            return
        offsets = {getattr(c, "offset", None) for c in cache}
        if len(offsets) != 1:
            return
        offset = offsets.pop()
        if not isinstance(offset, int) or offset <= 0 or offset > len(tokens):
            return
        self.prompt_cache.insert_cache(self.model_id, tokens[:offset], cache)

    # -- generation ----------------------------------------------------------------------------------------------

    def generate(
        self,
        tokens: list[int],
        request: ChatRequest | CompletionRequest,
        cancel: CancelToken,
    ) -> Iterator[Delta]:
        limit = request.max_tokens or self.config.max_tokens_default
        logprobs, top_logprobs, param = reading(request)
        self._check_length(tokens, limit, param)
        sampler = sampler_for(request)
        processors = processors_for(request, self.vocab_size)
        seed(request)
        cache, rest = self._fetch_cache(tokens)
        reader = LogprobReader(self.tokenizer, top_logprobs) if logprobs else None
        eos = self.tokenizer.eos_token_ids
        kwargs: dict[str, Any] = {
            "max_tokens": limit,
            "sampler": sampler,
            "logits_processors": processors or None,
            "prompt_cache": cache,
            "prefill_step_size": self.config.prefill_step_size,
        }
        if self.draft_model is not None:
            kwargs["draft_model"] = self.draft_model
            kwargs["num_draft_tokens"] = self.config.num_draft_tokens
        elif self.config.kv_bits is not None:
            kwargs.update(
                kv_bits=self.config.kv_bits,
                kv_group_size=self.config.kv_group_size,
                quantized_kv_start=self.config.quantized_kv_start,
            )
        generated: list[int] = []
        finish_reason = "length"
        stream = stream_generate(self.model, self.tokenizer, mx.array(rest), **kwargs)
        try:
            for response in stream:
                token = response.token
                generated.append(token)
                if cancel.cancelled:  # the client went away, or the core reached a stop sequence
                    finish_reason = "stop"
                    break
                entries = None
                if reader is not None and not (response.finish_reason == "stop" and token in eos):
                    entries = [reader.read(token, response.logprobs)]
                if response.finish_reason is not None:
                    finish_reason = response.finish_reason
                if response.text or entries:
                    yield Delta(text=response.text, logprobs=entries)
        finally:
            stream.close()
            self._store_cache(cache, tokens + generated)
            if cancel.gone:
                logger.info("model '%s': request cancelled after %d tokens", self.model_id, len(generated))
        completion = len(generated) - (1 if generated and generated[-1] in eos else 0)
        usage = Usage(
            prompt_tokens=len(tokens),
            completion_tokens=completion,
            cached_tokens=len(tokens) - len(rest) if self.prompt_cache is not None else None,
        )
        yield Delta(finish_reason=finish_reason, usage=usage)

    def chat(self, request: ChatRequest, cancel: CancelToken) -> Iterator[Delta]:
        return self.generate(self.chat_tokens(request), request, cancel)

    def complete(self, request: CompletionRequest, prompt: str | list[int], cancel: CancelToken) -> Iterator[Delta]:
        return self.generate(self.prompt_tokens(prompt), request, cancel)

    # -- hidden states -------------------------------------------------------------------------------------------

    def _decoder(self) -> Any:
        inner = getattr(self.model, "model", None) or getattr(
            getattr(self.model, "language_model", None), "model", None
        )
        if inner is None or not hasattr(inner, "layers") or not hasattr(inner, "norm"):
            raise BadRequestError(
                f"model '{self.model_id}' does not expose its decoder layers for hidden states", param="model"
            )
        return inner

    def hidden_states(self, request: HiddenStatesRequest) -> list[HiddenStates]:
        layer = request.layer if "layer" in request.model_fields_set else self.config.hidden_layer_default
        inner = self._decoder()
        layers = list(inner.layers)
        count = len(layers)
        index = layer if layer >= 0 else count + layer
        if not 0 <= index < count:
            raise BadRequestError(
                f"layer {layer} is out of range for model '{self.model_id}' with {count} decoder layers "
                f"(use 0..{count - 1} or -{count}..-1)",
                param="layer",
            )
        results = []
        norm = inner.norm
        inner.layers = layers[: index + 1]
        inner.norm = nn.Identity()
        try:
            for text in request.inputs():
                if request.apply_chat_template:
                    chat = ChatRequest(messages=[ChatMessage(role="user", content=text)])
                    tokens = self.chat_tokens(chat)
                else:
                    tokens = self.tokenize(text, add_special_tokens=True)
                if request.max_length is not None:
                    tokens = tokens[: request.max_length]
                if not tokens:
                    raise BadRequestError("an input has no tokens", param="input")
                output = inner(mx.array(tokens)[None])
                array = np.array(output[0].astype(mx.float32), dtype="<f4", copy=False)
                results.append(HiddenStates(data=array.tobytes(), shape=(array.shape[0], array.shape[1]), layer=index))
        finally:
            inner.layers = layers
            inner.norm = norm
        return results
