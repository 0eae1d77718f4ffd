"""``[models.config]`` of ``provider = "faster_whisper"``.

Imported by the light entry point (:mod:`heylook_faster_whisper.plugin`) and by the provider; pydantic and the
core's contract only.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from heylook_core import ProviderConfig


class FasterWhisperConfig(ProviderConfig):
    """``[models.config]`` for ``provider = "faster_whisper"``; unknown keys are rejected."""

    model_path: str = Field(min_length=1, description="a local CTranslate2 Whisper folder, or a model id to download")
    device: Literal["auto", "cpu", "cuda"] = "auto"
    device_index: int = Field(default=0, ge=0)
    compute_type: str = Field(default="default", description="int8, int8_float16, float16, float32, default, ...")
    cpu_threads: int = Field(
        default=0, ge=0, description="0: the CPU count, at most 4 (more threads than cores is slower)"
    )
    beam_size: int = Field(default=5, ge=1, le=32)
    vad_filter: bool = Field(default=False, description="skip silence with the Silero VAD before decoding")
    word_timestamps: bool = Field(default=False, description="compute word timestamps even when not asked")
    translate: bool | None = Field(
        default=None, description="offer /v1/audio/translations; default: when the model is multilingual"
    )
