"""Request and result types shared by the core and the providers.

Requests are pydantic models that mirror the OpenAI wire format (``../shared/OPENAI_API.md``); providers receive
them already validated, with defaults applied, and never see HTTP. What providers produce is plain dataclasses:
:class:`Delta` is one streamed piece of a generation (cheap to create once per token), the others are whole
results.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

from heylook_core.parameters import SamplingFields

MAX_MODEL_NAME = 256  # longer ``model`` values are a 400; error messages show a prefix only

ModelName = Annotated[str, Field(min_length=1, max_length=MAX_MODEL_NAME)]  # "" is a 400, not the default model


class ParamError(ValueError):
    """A validation error that names its parameter: the 400 carries ``param`` and the message without pydantic's
    "Value error, " prefix. ``param`` is the full path; ``sub`` is a path below the field that raised it."""

    def __init__(self, message: str, *, param: str | None = None, sub: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.sub = sub


# ---------------------------------------------------------------------------------------------------------------
# Requests


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


def _finite(value: Any, where: str) -> None:
    """Raise for NaN or an infinity anywhere in ``value`` (parameters outside the schema included)."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{where} must be a finite number")
    if isinstance(value, dict):
        for key, item in value.items():
            _finite(item, f"{where}.{key}")
    elif isinstance(value, list):
        for item in value:
            _finite(item, where)


class ImageURL(_Strict):
    url: str
    detail: Literal["auto", "low", "high"] | None = None


class TextPart(_Strict):
    type: Literal["text"]
    text: str
    cache_control: dict[str, Any] | None = None  # a prompt-caching hint (OpenRouter, LiteLLM); it changes no output


class ImagePart(_Strict):
    type: Literal["image_url"]
    image_url: ImageURL
    cache_control: dict[str, Any] | None = None


ContentPart = TextPart | ImagePart
PART_TYPES = ("text", "image_url")
_PARTS: TypeAdapter[list[ContentPart]] = TypeAdapter(list[Annotated[ContentPart, Field(discriminator="type")]])
_PART_HINTS = {
    "file": "send documents as text",
    "input_audio": "transcribe audio with /v1/audio/transcriptions first",
    "refusal": "send the refusal as a text part",
}


def _content_parts(value: list[Any]) -> list[ContentPart]:
    """Validate content parts one by one, so that an error names the part type and its real path."""
    for index, part in enumerate(value):
        kind = part.get("type") if isinstance(part, dict) else None
        if not isinstance(part, dict) or not isinstance(kind, str):
            raise ParamError("a content part is an object with a 'type'", sub=f"{index}")
        if kind not in PART_TYPES:
            hint = _PART_HINTS.get(kind)
            raise ParamError(
                f"content parts of type '{kind[:64]}' are not supported (supported: {', '.join(PART_TYPES)})"
                + (f"; {hint}" if hint else ""),
                sub=f"{index}.type",
            )
    try:
        return _PARTS.validate_python(value)
    except ValidationError as error:
        first = error.errors()[0]
        loc = [str(part) for part in first["loc"]]
        del loc[1:2]  # (index, part type, field...): the type is the discriminator, not a path
        raise ParamError(first["msg"], sub=".".join(loc)) from None


class FunctionCall(BaseModel):
    name: str
    arguments: str


class ToolCall(BaseModel):
    id: str
    type: Literal["function"] = "function"
    function: FunctionCall


class ChatMessage(BaseModel):
    """One message; unknown keys are kept (clients echo fields such as ``refusal`` back)."""

    model_config = ConfigDict(extra="allow")

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[ContentPart] | None = None
    name: str | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None
    reasoning_content: str | None = None

    @field_validator("content", mode="before")
    @classmethod
    def _parts(cls, value: Any) -> Any:
        return _content_parts(value) if isinstance(value, list) else value

    @model_validator(mode="after")
    def _content_required(self) -> ChatMessage:
        if self.role != "assistant" and (self.content is None or self.content == []):
            raise ValueError(f"a '{self.role}' message needs content")
        return self

    def text(self) -> str:
        """The message's text parts joined (images left out)."""
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text for part in self.content if isinstance(part, TextPart))

    def images(self) -> list[str]:
        """The URLs of the message's image parts."""
        if not isinstance(self.content, list):
            return []
        return [part.image_url.url for part in self.content if isinstance(part, ImagePart)]


class StreamOptions(_Strict):
    include_usage: bool = False


class JSONSchemaFormat(_Strict):
    name: str = "response"
    description: str | None = None
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")
    strict: bool | None = None


class ResponseFormat(_Strict):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: JSONSchemaFormat | None = None

    @model_validator(mode="after")
    def _schema_present(self) -> ResponseFormat:
        if self.type == "json_schema" and (self.json_schema is None or self.json_schema.schema_ is None):
            raise ValueError("response_format of type 'json_schema' needs json_schema.schema")
        return self


class FunctionDef(_Strict):
    name: str
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class Tool(_Strict):
    type: Literal["function"]
    function: FunctionDef


class ToolChoiceFunctionName(_Strict):
    name: str = Field(min_length=1)


class ToolChoiceFunction(_Strict):
    """``{"type": "function", "function": {"name": "..."}}``: call this tool."""

    type: Literal["function"]
    function: ToolChoiceFunctionName


# Validated as ToolChoiceFunction, handed on as the plain dict providers (and llama.cpp) expect.
ToolChoice = (
    Literal["none", "auto", "required"]
    | Annotated[
        ToolChoiceFunction,
        AfterValidator(lambda choice: choice.model_dump()),
        PlainSerializer(lambda choice: choice, return_type=dict[str, Any]),
    ]
)


Stop = str | list[str] | None


class SamplingParams(SamplingFields):
    """Sampling parameters shared by chat and completions. ``None`` means "not set": defaults fill it.

    The sampling fields and their ranges come from :class:`~heylook_core.parameters.SamplingFields`; the optional
    parameters a request sets are checked against what its model honours (:class:`~heylook_core.Parameter`).
    """

    model_config = ConfigDict(extra="allow", populate_by_name=True, allow_inf_nan=False)

    model: ModelName | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    stop: Stop = None
    n: int | None = Field(default=None, ge=1, le=1, description="only n = 1 is served")
    logit_bias: dict[str, float] | None = None
    user: str | None = None

    @field_validator("stop")
    @classmethod
    def _check_stop(cls, value: Stop) -> Stop:
        items = [value] if isinstance(value, str) else (value or [])
        if len(items) > 16:
            raise ValueError("at most 16 stop sequences")
        if any(item == "" for item in items):
            raise ValueError("stop sequences must not be empty")
        return value

    @field_validator("logit_bias")
    @classmethod
    def _check_bias(cls, value: dict[str, float] | None) -> dict[str, float] | None:
        for key, bias in (value or {}).items():
            if not key.lstrip("-").isdigit():
                raise ValueError(f"logit_bias keys are token ids; got '{key}'")
            if not -100 <= bias <= 100:
                raise ValueError(f"logit_bias values lie in [-100, 100]; got {bias}")
        return value

    @model_validator(mode="after")
    def _finite_extras(self) -> SamplingParams:
        for key, value in (self.model_extra or {}).items():
            _finite(value, key)
        if self.stream_options is not None and not self.stream:
            raise ParamError("stream_options is only allowed when stream is true", param="stream_options")
        return self

    def stop_list(self) -> list[str]:
        if self.stop is None:
            return []
        return [self.stop] if isinstance(self.stop, str) else list(self.stop)

    def extra_params(self) -> dict[str, Any]:
        """Parameters outside the schema (backend-specific ones); the core checks them against the provider."""
        return dict(self.model_extra or {})


class ChatRequest(SamplingParams):
    """``POST /v1/chat/completions``."""

    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    logprobs: bool | None = None
    top_logprobs: int | None = Field(default=None, ge=0, le=20)
    response_format: ResponseFormat | None = None
    tools: list[Tool] | None = None
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool | None = None
    enable_thinking: bool | None = None
    # OpenAI parameters that change no output here: accepted and not passed on (docs/api.md, "Parameters")
    store: bool | None = None
    metadata: dict[str, str] | None = None
    service_tier: str | None = Field(default=None, max_length=64)
    prompt_cache_key: str | None = Field(default=None, max_length=1024)
    safety_identifier: str | None = Field(default=None, max_length=1024)
    modalities: list[Literal["text"]] | None = Field(default=None, description="only text output is served")
    reasoning_effort: Literal["none", "minimal", "low", "medium", "high", "xhigh"] | None = Field(
        default=None, description="mapped onto enable_thinking: 'none' and 'minimal' turn thinking off, the others on"
    )

    @model_validator(mode="after")
    def _merge_limits(self) -> ChatRequest:
        if self.max_completion_tokens is not None:
            if self.max_tokens is not None and self.max_tokens != self.max_completion_tokens:
                raise ValueError("max_tokens and max_completion_tokens disagree; send one of them")
            self.max_tokens = self.max_completion_tokens
        if self.top_logprobs is not None and not self.logprobs:
            raise ParamError("top_logprobs needs logprobs = true", param="top_logprobs")
        if self.tool_choice is not None and not self.tools:
            raise ParamError("tool_choice needs tools", param="tool_choice")
        if isinstance(self.tool_choice, dict):
            name = self.tool_choice["function"]["name"]
            if not any(tool.function.name == name for tool in self.tools or []):
                raise ParamError(
                    f"tool_choice names the function '{name[:64]}', which is not in tools", param="tool_choice"
                )
        if self.reasoning_effort is not None:
            thinking = self.reasoning_effort not in ("none", "minimal")
            if self.enable_thinking is not None and self.enable_thinking != thinking:
                raise ParamError(
                    f"reasoning_effort '{self.reasoning_effort}' and enable_thinking = "
                    f"{str(self.enable_thinking).lower()} disagree; send one of them",
                    param="reasoning_effort",
                )
            self.enable_thinking = thinking
        return self

    def has_images(self) -> bool:
        return any(message.images() for message in self.messages)


class CompletionRequest(SamplingParams):
    """``POST /v1/completions``. The core hands providers one prompt at a time."""

    prompt: str | list[str] | list[int] | list[list[int]]
    logprobs: int | None = Field(default=None, ge=0, le=20)
    echo: bool | None = None
    suffix: str | None = None
    best_of: int | None = Field(default=None, ge=1, le=1)

    @field_validator("prompt")
    @classmethod
    def _prompt_not_empty(cls, value: Any) -> Any:
        if isinstance(value, list) and (not value or any(isinstance(item, list) and not item for item in value)):
            raise ValueError("prompt must not be an empty list")
        return value

    def prompts(self) -> list[str | list[int]]:
        """The prompts as a list (a string, a list of strings, one token list or several)."""
        prompt = self.prompt
        if isinstance(prompt, str):
            return [prompt]
        if prompt and all(isinstance(item, int) for item in prompt):
            return [list(prompt)]  # type: ignore[arg-type]
        return list(prompt)  # type: ignore[arg-type]


class EmbeddingRequest(_Strict):
    """``POST /v1/embeddings``."""

    model: ModelName | None = None
    input: str | list[str] | list[int] | list[list[int]]
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(default=None, ge=1)
    user: str | None = None

    def inputs(self) -> list[str] | list[list[int]]:
        value = self.input
        if isinstance(value, str):
            return [value]
        ids = [item for item in value if isinstance(item, int)]
        if value and len(ids) == len(value):
            return [ids]
        texts = [item for item in value if isinstance(item, str)]
        if len(texts) == len(value):
            return texts
        return [list(item) for item in value if isinstance(item, list)]

    @model_validator(mode="after")
    def _not_empty(self) -> EmbeddingRequest:
        inputs = self.inputs()
        if not inputs or any(len(item) == 0 for item in inputs):
            raise ParamError("input must not be empty", param="input")
        return self

    def has_token_ids(self) -> bool:
        return any(not isinstance(item, str) for item in self.inputs())


class HiddenStatesRequest(_Strict):
    """``POST /v1/hidden_states``: per-token outputs of one layer."""

    model: ModelName | None = None
    input: str | list[str] = Field(min_length=1)
    layer: int = -2
    max_length: int | None = Field(default=None, ge=1)
    encoding_format: Literal["float", "base64"] = "float"
    apply_chat_template: bool = False

    def inputs(self) -> list[str]:
        return [self.input] if isinstance(self.input, str) else list(self.input)


class BatchChatRequest(_Strict):
    """``POST /v1/batch/chat/completions``: several chat requests answered together, in order."""

    model: ModelName | None = None
    requests: list[ChatRequest] = Field(min_length=1, max_length=256)


class TokenizeRequest(_Strict):
    """``POST /v1/tokenize``."""

    model: ModelName | None = None
    input: str
    add_special_tokens: bool = True


Granularity = Literal["segment", "word"]


def _segments_only() -> list[Granularity]:
    return ["segment"]


class TranscriptionRequest(BaseModel):
    """The parameters of ``POST /v1/audio/transcriptions`` (the audio itself arrives as :class:`AudioInput`)."""

    model_config = ConfigDict(allow_inf_nan=False)

    model: ModelName | None = None
    language: str | None = None
    prompt: str | None = None
    response_format: Literal["json", "text", "srt", "verbose_json", "vtt"] = "json"
    temperature: float | None = Field(default=None, ge=0.0, le=1.0)
    timestamp_granularities: list[Granularity] = Field(default_factory=_segments_only)
    task: Literal["transcribe", "translate"] = "transcribe"


# ---------------------------------------------------------------------------------------------------------------
# What providers produce


@dataclass(slots=True)
class TopLogprob:
    token: str
    logprob: float
    bytes: list[int] | None = None


@dataclass(slots=True)
class TokenLogprob:
    token: str
    logprob: float
    bytes: list[int] | None = None
    top_logprobs: list[TopLogprob] = field(default_factory=list)


@dataclass(slots=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int | None = None

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.total_tokens,
        }
        if self.cached_tokens is not None:
            data["prompt_tokens_details"] = {"cached_tokens": self.cached_tokens}
        return data


@dataclass(slots=True)
class Delta:
    """One streamed piece of a generation.

    A provider yields any number of deltas with ``text`` (and optionally ``logprobs`` for the tokens in it), then
    exactly one last delta with ``finish_reason`` (``"stop"``, ``"length"`` or ``"tool_calls"``) and ``usage``.
    ``reasoning`` carries thinking text when the engine separates it itself; otherwise the core splits think tags
    out of ``text``. ``tool_calls`` holds OpenAI streaming fragments (``index``, ``id``, ``type``, ``function``).
    ``stop_sequence``, on the last delta, is the request's stop sequence that ended the generation, where the
    provider knows it (``StopMatcher.matched``); Anthropic's Messages API reports it.
    """

    text: str = ""
    reasoning: str = ""
    tool_calls: list[dict[str, Any]] | None = None
    logprobs: list[TokenLogprob] | None = None
    finish_reason: str | None = None
    usage: Usage | None = None
    stop_sequence: str | None = None


@dataclass(slots=True)
class ChatResult:
    """A whole generation: what a non-streamed request and each batch entry return."""

    text: str = ""
    reasoning: str = ""
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    logprobs: list[TokenLogprob] | None = None
    finish_reason: str = "stop"
    usage: Usage = field(default_factory=Usage)


@dataclass(slots=True)
class BatchChatResult:
    """What a provider's ``batch_chat`` may return instead of a plain list: the results in request order and how
    the backend ran them. ``mode`` is ``"batched"`` (decoded together) or ``"sequential"`` (one after another);
    ``reason`` says why, for the response's ``batching`` field."""

    results: list[ChatResult]
    mode: str = "batched"
    reason: str = ""


@dataclass(slots=True)
class EmbeddingResult:
    vectors: list[list[float]]
    prompt_tokens: int


@dataclass(slots=True)
class HiddenStates:
    """One input's hidden states: ``data`` is float32 little-endian, row-major with ``shape`` (tokens, width)."""

    data: bytes
    shape: tuple[int, int]
    layer: int
    dtype: str = "float32"


@dataclass(slots=True)
class AudioInput:
    """Decoded audio: mono float32 little-endian samples at ``sample_rate`` (16 kHz)."""

    samples: bytes
    sample_rate: int = 16000

    @property
    def duration(self) -> float:
        return len(self.samples) / 4 / self.sample_rate


@dataclass(slots=True)
class Segment:
    id: int
    start: float
    end: float
    text: str
    tokens: list[int] = field(default_factory=list)
    avg_logprob: float = 0.0
    compression_ratio: float = 0.0
    no_speech_prob: float = 0.0
    temperature: float = 0.0


@dataclass(slots=True)
class Word:
    word: str
    start: float
    end: float


@dataclass(slots=True)
class Transcription:
    text: str
    language: str
    duration: float
    segments: list[Segment] = field(default_factory=list)
    words: list[Word] | None = None
