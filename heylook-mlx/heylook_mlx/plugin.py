"""Entry point module of heylook-mlx: the ``mlx`` provider spec.

The ``[models.config]`` schema is :mod:`heylook_mlx.config`, shared with the engine.

Light on purpose: nothing here imports MLX. The engine (:mod:`heylook_mlx.provider`) is imported by the factory
when a model first loads, and the availability check imports ``mlx.core`` only when ``heylookllm doctor`` calls it.
"""

from __future__ import annotations

import importlib.util
import platform
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from heylook_core import Availability, Capability, Parameter, ParameterGroup, ProviderSpec, hookimpl
from heylook_mlx.config import MLXConfig

if TYPE_CHECKING:
    from heylook_core import Provider

HEYLOOK_CONTRACT = ">=1,<2"  # the heylook plugin contract versions this plugin supports (docs/plugins.md)

INSTALL_FIX_LINUX = (
    "on Linux install MLX's native library through an extra: pip install 'heylook-mlx[cpu]' (CPU) or "
    "pip install 'heylook-mlx[cuda]' (NVIDIA GPUs)"
)


# Tools are rendered by the model's chat template (one without tools answers them with a 400); "required" and a named
# tool_choice are refused (no constrained decoding on MLX here). No response_format: no constrained decoding.
TEXT_PARAMETERS: frozenset[str] = (
    ParameterGroup.SAMPLING
    | {Parameter.STOP}
    | ParameterGroup.LOGPROBS
    | ParameterGroup.TEMPLATE
    | ParameterGroup.TOOLS
)
# mlx-vlm's stream gives no per-token log-probabilities; tools are rendered for text models only so far.
VISION_PARAMETERS: frozenset[str] = TEXT_PARAMETERS - ParameterGroup.LOGPROBS - ParameterGroup.TOOLS


def capabilities(config: MLXConfig) -> frozenset[Capability]:
    if config.embedding:
        return frozenset({Capability.EMBEDDINGS})
    if config.vision:
        return frozenset({Capability.CHAT, Capability.VISION})
    return frozenset(
        {Capability.CHAT, Capability.COMPLETION, Capability.BATCH_CHAT, Capability.HIDDEN_STATES, Capability.TOKENIZE}
    )


def parameters(config: MLXConfig) -> frozenset[str]:
    if config.embedding:
        return frozenset()
    return VISION_PARAMETERS if config.vision else TEXT_PARAMETERS


def check() -> Availability:
    """Whether ``mlx.core`` imports (its native library is a separate package on Linux)."""
    if importlib.util.find_spec("mlx") is None:
        fix = INSTALL_FIX_LINUX if platform.system() == "Linux" else "pip install heylook-mlx"
        return Availability(False, "the 'mlx' package is not installed", fix)
    try:
        import mlx.core as mx
    except Exception as error:  # ImportError, or an OSError from a missing native library
        fix = INSTALL_FIX_LINUX if platform.system() == "Linux" else "reinstall mlx: pip install -U --force mlx"
        return Availability(False, f"mlx cannot be imported: {type(error).__name__}: {error}", fix)
    missing = [name for name in ("mlx_lm", "mlx_vlm") if importlib.util.find_spec(name) is None]
    if missing:
        return Availability(False, f"missing {', '.join(missing)}", "pip install heylook-mlx")
    return Availability(True, f"mlx {getattr(mx, '__version__', '?')} on {mx.default_device()}")


def _factory() -> type[Provider[MLXConfig]]:
    from heylook_mlx.provider import MLXProvider

    return MLXProvider


SPEC = ProviderSpec(
    name="mlx",
    factory=_factory,
    config_schema=MLXConfig,
    capabilities=capabilities,
    parameters=parameters,
    max_concurrency=lambda config: config.concurrency,
    check=check,
    description="MLX: mlx-lm text models, mlx-vlm vision models, mlx-embeddings encoders",
)


@hookimpl
def register_providers(register: Callable[[ProviderSpec[Any]], None]) -> None:
    register(SPEC)
