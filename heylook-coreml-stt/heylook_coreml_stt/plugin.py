"""The Core ML speech-to-text plugin's entry point: spec, config schema and availability check.

Light on purpose: coremltools, numpy and tokenizers are imported when a model loads, never at plugin load.
"""

from __future__ import annotations

import importlib.util
import platform
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Literal

from pydantic import Field

from heylook_core import Availability, Capability, ProviderConfig, ProviderSpec, hookimpl

if TYPE_CHECKING:
    from heylook_core import Provider


class CoreMLSTTConfig(ProviderConfig):
    """``[models.config]`` for ``provider = "coreml_stt"``; unknown keys are rejected."""

    model_path: str = Field(
        min_length=1, description="folder with encoder and decoder (.mlpackage or .mlmodelc) and tokenizer.json"
    )
    compute_units: Literal["all", "cpu_only", "cpu_and_gpu", "cpu_and_ne"] = "all"
    beam_size: int = Field(default=1, ge=1, le=16, description="1: greedy decoding")
    translate: bool = Field(default=False, description="offer /v1/audio/translations (multilingual models only)")


def capabilities(config: CoreMLSTTConfig) -> frozenset[Capability]:
    if config.translate:
        return frozenset({Capability.TRANSCRIPTION, Capability.TRANSLATION})
    return frozenset({Capability.TRANSCRIPTION})


def check() -> Availability:
    if sys.platform != "darwin":
        return Availability(
            False,
            f"needs macOS: Core ML prediction runs only on macOS (this host: {platform.system()})",
            'on this host use heylook-faster-whisper (provider = "faster_whisper")',
        )
    missing = [name for name in ("coremltools", "numpy", "tokenizers") if importlib.util.find_spec(name) is None]
    if missing:
        return Availability(False, f"missing Python packages: {', '.join(missing)}", "pip install heylook-coreml-stt")
    return Availability(True, "Core ML available")


def _factory() -> type[Provider]:
    from heylook_coreml_stt.provider import CoreMLSTTProvider

    return CoreMLSTTProvider


SPEC = ProviderSpec(
    name="coreml_stt",
    factory=_factory,
    config_schema=CoreMLSTTConfig,
    capabilities=capabilities,
    parameters=frozenset({"temperature"}),
    check=check,
    description="speech-to-text with Core ML Whisper models (macOS)",
)


@hookimpl
def register_providers(register: Callable[[ProviderSpec], None]) -> None:
    register(SPEC)
