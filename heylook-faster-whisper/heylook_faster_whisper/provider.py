"""The faster-whisper provider: one ``WhisperModel`` per configured model, driven on the model's worker thread.

faster-whisper transcribes audio of any length itself: it slides 30 s windows over the clip, seeks to the last
complete timestamp of each window and offsets every segment, so the timestamps it returns are continuous over
the whole clip. The provider hands it the decoded 16 kHz mono samples and maps its segments and words onto the
core's :class:`~heylook_core.types.Transcription`.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from heylook_core import (
    AudioInput,
    BadRequestError,
    Segment,
    ThreadedProvider,
    Transcription,
    TranscriptionRequest,
    Word,
)
from heylook_faster_whisper.config import FasterWhisperConfig

logger = logging.getLogger(__name__)

TEMPERATURE_FALLBACK = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)


def resolve_model_path(model_path: str) -> str:
    """A local folder (checked for ``model.bin``) or a model id faster-whisper downloads itself."""
    expanded = os.path.expanduser(model_path)
    folder = Path(expanded)
    looks_local = folder.is_absolute() or model_path.startswith((".", "~")) or folder.exists()
    if not looks_local:
        return model_path
    if not folder.is_dir():
        raise FileNotFoundError(f"model_path '{model_path}' is not a folder")
    if not (folder / "model.bin").is_file():
        raise FileNotFoundError(
            f"model_path '{model_path}' holds no model.bin: it must be a CTranslate2 Whisper model "
            "(convert one with ct2-transformers-converter)"
        )
    return str(folder)


class FasterWhisperProvider(ThreadedProvider[FasterWhisperConfig]):
    def __init__(self, model_id: str, config: FasterWhisperConfig) -> None:
        super().__init__(model_id, config)
        self.model: Any = None

    def load_sync(self) -> None:
        from faster_whisper import WhisperModel

        path = resolve_model_path(self.config.model_path)
        self.model = WhisperModel(
            path,
            device=self.config.device,
            device_index=self.config.device_index,
            compute_type=self.config.compute_type,
            cpu_threads=self.config.cpu_threads or min(4, os.cpu_count() or 1),
        )
        logger.info("loaded %s from %s (multilingual: %s)", self.model_id, path, bool(self.model.model.is_multilingual))

    def unload_sync(self) -> None:
        self.model = None

    def info(self) -> dict[str, Any]:
        if self.model is None:
            return {}
        return {"multilingual": bool(self.model.model.is_multilingual), "device": self.config.device}

    def transcribe_sync(self, audio: AudioInput, request: TranscriptionRequest) -> Transcription:
        model = self.model
        multilingual = bool(model.model.is_multilingual)
        if request.task == "translate" and not multilingual:
            raise BadRequestError(f"model '{self.model_id}' is English-only and cannot translate", param="model")
        language = request.language.lower() if request.language else None
        if language is not None and not multilingual and language != "en":
            raise BadRequestError(
                f"model '{self.model_id}' is English-only; language '{request.language}' is not supported",
                param="language",
            )
        if language is not None and multilingual and language not in model.supported_languages:
            raise BadRequestError(
                f"language '{request.language}' is not one model '{self.model_id}' knows; "
                f"use an ISO-639-1 code such as en, de, fr",
                param="language",
            )
        words = "word" in request.timestamp_granularities or self.config.word_timestamps
        temperature = TEMPERATURE_FALLBACK if request.temperature is None else request.temperature
        samples = np.frombuffer(audio.samples, dtype="<f4")
        pieces, info = model.transcribe(
            samples,
            language=language,
            task=request.task,
            beam_size=self.config.beam_size,
            temperature=temperature,
            initial_prompt=request.prompt,
            vad_filter=self.config.vad_filter,
            word_timestamps=words,
        )
        segments: list[Segment] = []
        found: list[Word] = []
        for piece in pieces:  # a generator: decoding happens while iterating
            segments.append(
                Segment(
                    id=len(segments),
                    start=float(piece.start),
                    end=float(piece.end),
                    text=piece.text,
                    tokens=list(piece.tokens),
                    avg_logprob=float(piece.avg_logprob),
                    compression_ratio=float(piece.compression_ratio),
                    no_speech_prob=float(piece.no_speech_prob),
                    temperature=float(piece.temperature or 0.0),
                )
            )
            for word in piece.words or []:
                found.append(Word(word=word.word.strip(), start=float(word.start), end=float(word.end)))
        return Transcription(
            text="".join(segment.text for segment in segments).strip(),
            language=info.language,
            duration=audio.duration,
            segments=segments,
            words=found if words else None,
        )
