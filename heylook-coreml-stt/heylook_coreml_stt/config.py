"""``[models.config]`` of ``provider = "coreml_stt"``.

Imported by the light entry point (:mod:`heylook_coreml_stt.plugin`) and by the provider; pydantic and the core's
contract only.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from heylook_core import ProviderConfig


class CoreMLSTTConfig(ProviderConfig):
    """``[models.config]`` for ``provider = "coreml_stt"``; unknown keys are rejected."""

    model_path: str = Field(
        min_length=1, description="folder with encoder and decoder (.mlpackage or .mlmodelc) and tokenizer.json"
    )
    compute_units: Literal["all", "cpu_only", "cpu_and_gpu", "cpu_and_ne"] = "all"
    beam_size: int = Field(default=1, ge=1, le=16, description="1: greedy decoding")
    translate: bool = Field(default=False, description="offer /v1/audio/translations (multilingual models only)")
