"""heylook: a local LLM server that speaks the OpenAI HTTP API, with backends as plugins.

The names here are the plugin contract: everything a provider, middleware or protocol plugin needs is imported from
``heylook_core`` itself. The other public modules (``PUBLIC_MODULES``) are for test code only, so a server never
loads them: :mod:`heylook_core.testing` (helpers) and :mod:`heylook_core.conformance` (the conformance suite, a
pytest plugin, with :mod:`heylook_core.conformance.suite`). Every other module is internal and may change without
notice; ``tests/core/test_public_api.py`` keeps ``__all__`` honest and ``tests/core/test_layout.py`` fails when a
first-party plugin imports an internal module.
"""

from importlib import metadata as _metadata

from heylook_core.config import ModelEntry, SamplingDefaults, Settings
from heylook_core.errors import (
    AuthenticationError,
    BadRequestError,
    ConfigError,
    HeylookError,
    ModelLoadError,
    ModelNotFoundError,
    NotFoundError,
    PayloadTooLargeError,
    PermissionDeniedError,
    PluginError,
    PluginLoadError,
    ProviderError,
    RateLimitError,
    ServiceUnavailableError,
    UnsupportedError,
    UnsupportedMediaTypeError,
)
from heylook_core.generation import StopMatcher, ThinkSplitter
from heylook_core.hookspecs import CONTRACT_VERSION, hookimpl
from heylook_core.middleware import CallNext, GenerationContext, GenerationRequest, Wrapper
from heylook_core.parameters import Parameter, ParameterGroup
from heylook_core.providers import (
    Availability,
    Capability,
    Provider,
    ProviderConfig,
    ProviderSpec,
    ThreadedProvider,
)
from heylook_core.runner import CancelToken, ModelWorker, WorkerFailedError
from heylook_core.security import require_admin_key, require_api_key
from heylook_core.service import GenerationService, Prepared
from heylook_core.streaming import is_ping
from heylook_core.toolcalls import TaggedFormat, delegated_format, detect_format, forced_call, template_supports_tools
from heylook_core.types import (
    AudioInput,
    BatchChatRequest,
    BatchChatResult,
    ChatMessage,
    ChatRequest,
    ChatResult,
    CompletionRequest,
    Delta,
    EmbeddingRequest,
    EmbeddingResult,
    HiddenStates,
    HiddenStatesRequest,
    ImagePart,
    ImageURL,
    SamplingParams,
    Segment,
    TextPart,
    TokenizeRequest,
    TokenLogprob,
    Tool,
    ToolCall,
    TopLogprob,
    Transcription,
    TranscriptionRequest,
    Usage,
    Word,
)

try:
    __version__ = _metadata.version("heylook-core")  # written once, in pyproject.toml
except _metadata.PackageNotFoundError:  # pragma: no cover - running from a source tree that was never installed
    __version__ = "0+unknown"

# The public submodules besides the package itself (see the module docstring).
PUBLIC_MODULES = ("heylook_core", "heylook_core.testing", "heylook_core.conformance", "heylook_core.conformance.suite")

__all__ = [
    # providers: the spec a plugin registers, the base classes, what a model can do and which parameters it honours
    "Availability",
    "Capability",
    "Parameter",
    "ParameterGroup",
    "Provider",
    "ProviderConfig",
    "ProviderSpec",
    "ThreadedProvider",
    # running an in-process engine: its worker thread, the cancellation flag, text-stream helpers
    "CancelToken",
    "ModelWorker",
    "StopMatcher",
    "ThinkSplitter",
    # tool calls: the format a chat template writes, and a call forced by tool_choice
    "TaggedFormat",
    "delegated_format",
    "detect_format",
    "forced_call",
    "template_supports_tools",
    # what a provider receives
    "AudioInput",
    "BatchChatRequest",
    "ChatMessage",
    "ChatRequest",
    "CompletionRequest",
    "EmbeddingRequest",
    "HiddenStatesRequest",
    "ImagePart",
    "ImageURL",
    "SamplingParams",
    "TextPart",
    "TokenizeRequest",
    "Tool",
    "ToolCall",
    "TranscriptionRequest",
    # what a provider returns
    "BatchChatResult",
    "ChatResult",
    "Delta",
    "EmbeddingResult",
    "HiddenStates",
    "Segment",
    "TokenLogprob",
    "TopLogprob",
    "Transcription",
    "Usage",
    "Word",
    # errors: each class is an HTTP status and error type (heylook_core.errors draws the tree)
    "AuthenticationError",
    "BadRequestError",
    "ConfigError",
    "HeylookError",
    "ModelLoadError",
    "ModelNotFoundError",
    "NotFoundError",
    "PayloadTooLargeError",
    "PermissionDeniedError",
    "PluginError",
    "PluginLoadError",
    "ProviderError",
    "RateLimitError",
    "ServiceUnavailableError",
    "UnsupportedError",
    "UnsupportedMediaTypeError",
    "WorkerFailedError",
    # hooks: the marker, middleware, routes, configuration
    "CallNext",
    "GenerationContext",
    "GenerationRequest",
    "ModelEntry",
    "SamplingDefaults",
    "Settings",
    "Wrapper",
    "hookimpl",
    "require_admin_key",
    "require_api_key",
    # protocol plugins: the generation service every wire protocol is an adapter on
    "GenerationService",
    "Prepared",
    "is_ping",
    # the package
    "CONTRACT_VERSION",
    "PUBLIC_MODULES",
    "__version__",
]
