"""The Core ML speech-to-text plugin's entry point: spec and availability check.

The config schema is :mod:`heylook_coreml_stt.config`, shared with the provider.

Light on purpose: coremltools, numpy and tokenizers are imported when a model loads, never at plugin load.
"""

from __future__ import annotations

import importlib.util
import platform
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from heylook_core import Availability, Capability, Parameter, ProviderSpec, hookimpl
from heylook_coreml_stt.config import CoreMLSTTConfig

if TYPE_CHECKING:
    from heylook_core import Provider

HEYLOOK_CONTRACT = ">=1,<2"  # the heylook plugin contract versions this plugin supports (docs/plugins.md)


def capabilities(config: CoreMLSTTConfig) -> frozenset[Capability]:
    if config.translate:
        return frozenset({Capability.TRANSCRIPTION, Capability.TRANSLATION})
    return frozenset({Capability.TRANSCRIPTION})


def check() -> Availability:
    if platform.system() != "Darwin":  # not sys.platform, after which mypy would skip the rest on Linux
        return Availability(
            False,
            f"needs macOS: Core ML prediction runs only on macOS (this host: {platform.system()})",
            'on this host use heylook-faster-whisper (provider = "faster_whisper")',
        )
    missing = [name for name in ("coremltools", "numpy", "tokenizers") if importlib.util.find_spec(name) is None]
    if missing:
        return Availability(False, f"missing Python packages: {', '.join(missing)}", "pip install heylook-coreml-stt")
    return Availability(True, "Core ML available")


def _factory() -> type[Provider[CoreMLSTTConfig]]:
    from heylook_coreml_stt.provider import CoreMLSTTProvider

    return CoreMLSTTProvider


SPEC = ProviderSpec(
    name="coreml_stt",
    factory=_factory,
    config_schema=CoreMLSTTConfig,
    capabilities=capabilities,
    parameters=frozenset({Parameter.TEMPERATURE}),
    check=check,
    description="speech-to-text with Core ML Whisper models (macOS)",
)


@hookimpl
def register_providers(register: Callable[[ProviderSpec[Any]], None]) -> None:
    register(SPEC)
