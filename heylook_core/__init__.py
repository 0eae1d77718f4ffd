"""heylook: a local LLM server that speaks the OpenAI HTTP API, with backends as plugins.

The names here are the surface plugin authors use; ``tests/core/test_public_api.py`` keeps ``__all__`` honest.
"""

from importlib import metadata as _metadata

from heylook_core.config import ModelEntry, SamplingDefaults, Settings
from heylook_core.errors import (
    BadRequestError,
    ConfigError,
    HeylookError,
    ModelLoadError,
    ModelNotFoundError,
    NotFoundError,
    PayloadTooLargeError,
    PluginError,
    ProviderError,
    ServiceUnavailableError,
    UnsupportedError,
)
from heylook_core.generation import StopMatcher, ThinkSplitter
from heylook_core.hookspecs import CONTRACT_VERSION, hookimpl
from heylook_core.middleware import GenerationContext
from heylook_core.parameters import Parameter, ParameterGroup
from heylook_core.providers import (
    Availability,
    Capability,
    Provider,
    ProviderConfig,
    ProviderSpec,
    ThreadedProvider,
)
from heylook_core.runner import CancelToken, ModelWorker
from heylook_core.service import GenerationService, Prepared
from heylook_core.streaming import is_ping
from heylook_core.types import ChatRequest, ChatResult, CompletionRequest, Delta, TokenLogprob, TopLogprob, Usage

try:
    __version__ = _metadata.version("heylook-core")  # written once, in pyproject.toml
except _metadata.PackageNotFoundError:  # pragma: no cover - running from a source tree that was never installed
    __version__ = "0+unknown"

__all__ = [
    "CONTRACT_VERSION",
    "Availability",
    "BadRequestError",
    "CancelToken",
    "Capability",
    "ChatRequest",
    "ChatResult",
    "CompletionRequest",
    "ConfigError",
    "Delta",
    "GenerationContext",
    "GenerationService",
    "HeylookError",
    "ModelEntry",
    "ModelLoadError",
    "ModelNotFoundError",
    "ModelWorker",
    "NotFoundError",
    "Parameter",
    "ParameterGroup",
    "PayloadTooLargeError",
    "PluginError",
    "Prepared",
    "Provider",
    "ProviderConfig",
    "ProviderError",
    "ProviderSpec",
    "SamplingDefaults",
    "ServiceUnavailableError",
    "Settings",
    "StopMatcher",
    "ThinkSplitter",
    "ThreadedProvider",
    "TokenLogprob",
    "TopLogprob",
    "UnsupportedError",
    "Usage",
    "__version__",
    "hookimpl",
    "is_ping",
]
