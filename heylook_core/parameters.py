"""The optional request parameters: one typed set (:class:`Parameter`), in groups a provider declares from.

A provider's spec lists the parameters its models honour (``ProviderSpec.parameters``), built from the groups of
:class:`ParameterGroup` and, for a backend's own request fields (llama.cpp's ``grammar``), plain strings. The core
answers a request that sets a parameter its model does not honour with a 400 naming the model and the parameter,
so a provider is never called with one it cannot apply. ``model``, ``messages``, ``prompt``, ``stream``,
``stream_options``, ``max_tokens`` and ``user`` are the core's own and always accepted.

:class:`SamplingFields` holds the sampling fields with their ranges, written once: the request types
(:class:`heylook_core.types.SamplingParams`) and the ``[models.defaults]`` schema
(:class:`heylook_core.config.SamplingDefaults`) both derive from it.
"""

from __future__ import annotations

import enum

from pydantic import BaseModel, Field


class Parameter(str, enum.Enum):
    """An optional request parameter; a member is its name as a string (``Parameter.TOP_K == "top_k"``)."""

    # sampling: how the next token is chosen
    TEMPERATURE = "temperature"
    TOP_P = "top_p"
    TOP_K = "top_k"
    MIN_P = "min_p"
    REPETITION_PENALTY = "repetition_penalty"
    PRESENCE_PENALTY = "presence_penalty"
    FREQUENCY_PENALTY = "frequency_penalty"
    SEED = "seed"
    LOGIT_BIAS = "logit_bias"
    # output control: where the output ends and what shape it takes
    STOP = "stop"
    RESPONSE_FORMAT = "response_format"
    # log-probabilities of the generated tokens
    LOGPROBS = "logprobs"
    TOP_LOGPROBS = "top_logprobs"
    # tools rendered into the prompt and calls read from the output
    TOOLS = "tools"
    TOOL_CHOICE = "tool_choice"
    PARALLEL_TOOL_CALLS = "parallel_tool_calls"
    # variables the chat template reads
    ENABLE_THINKING = "enable_thinking"
    # completions only
    ECHO = "echo"
    SUFFIX = "suffix"
    # embeddings
    DIMENSIONS = "dimensions"
    # transcription (``timestamp_granularities`` with "word")
    WORD_TIMESTAMPS = "word_timestamps"

    def __str__(self) -> str:
        return self.value

    def __format__(self, format_spec: str) -> str:  # f"{Parameter.TOP_K}" is "top_k" on every Python version
        return format(self.value, format_spec)


class ParameterGroup:
    """The parameters by group; each :class:`Parameter` is in exactly one of the groups listed in ``ALL``.

    A provider declares what it honours as a union of groups, less what it cannot apply, e.g.
    ``ParameterGroup.SAMPLING | ParameterGroup.OUTPUT_CONTROL | {"grammar"}``.
    """

    SAMPLING: frozenset[Parameter] = frozenset(
        {
            Parameter.TEMPERATURE,
            Parameter.TOP_P,
            Parameter.TOP_K,
            Parameter.MIN_P,
            Parameter.REPETITION_PENALTY,
            Parameter.PRESENCE_PENALTY,
            Parameter.FREQUENCY_PENALTY,
            Parameter.SEED,
            Parameter.LOGIT_BIAS,
        }
    )
    OUTPUT_CONTROL: frozenset[Parameter] = frozenset({Parameter.STOP, Parameter.RESPONSE_FORMAT})
    LOGPROBS: frozenset[Parameter] = frozenset({Parameter.LOGPROBS, Parameter.TOP_LOGPROBS})
    TOOLS: frozenset[Parameter] = frozenset({Parameter.TOOLS, Parameter.TOOL_CHOICE, Parameter.PARALLEL_TOOL_CALLS})
    TEMPLATE: frozenset[Parameter] = frozenset({Parameter.ENABLE_THINKING})
    COMPLETION: frozenset[Parameter] = frozenset({Parameter.ECHO, Parameter.SUFFIX})
    EMBEDDINGS: frozenset[Parameter] = frozenset({Parameter.DIMENSIONS})
    TRANSCRIPTION: frozenset[Parameter] = frozenset({Parameter.WORD_TIMESTAMPS})

    ALL: tuple[frozenset[Parameter], ...] = (
        SAMPLING,
        OUTPUT_CONTROL,
        LOGPROBS,
        TOOLS,
        TEMPLATE,
        COMPLETION,
        EMBEDDINGS,
        TRANSCRIPTION,
    )
    # everything a chat or completion request may set
    GENERATION: frozenset[Parameter] = SAMPLING | OUTPUT_CONTROL | LOGPROBS | TOOLS | TEMPLATE | COMPLETION


# Honoured by every model: tools run one at a time unless the provider declares parallel calls, so the switch
# changes no output for the others (docs/api.md, "Parameters").
NO_OUTPUT_CHANGE: frozenset[Parameter] = frozenset({Parameter.PARALLEL_TOOL_CALLS})


class SamplingFields(BaseModel):
    """The sampling fields with their ranges, shared by the request types and ``[models.defaults]``.

    ``None`` means "not set": the model's defaults fill it, then the server's. ``max_tokens`` is the core's own
    (always accepted); the others are :class:`Parameter` members of the sampling group.
    """

    max_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)
    top_k: int | None = Field(default=None, ge=0)
    min_p: float | None = Field(default=None, ge=0.0, le=1.0)
    repetition_penalty: float | None = Field(default=None, gt=0.0)
    presence_penalty: float | None = Field(default=None, ge=-2.0, le=2.0)
    frequency_penalty: float | None = Field(default=None, ge=-2.0, le=2.0)
    seed: int | None = None


__all__ = ["NO_OUTPUT_CHANGE", "Parameter", "ParameterGroup", "SamplingFields"]
