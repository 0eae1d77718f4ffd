"""The Core ML speech-to-text provider: validate the model folder, make a runner, decode on the worker thread."""

from __future__ import annotations

import logging

import numpy as np

from heylook_core import AudioInput, BadRequestError, ThreadedProvider, Transcription, TranscriptionRequest
from heylook_coreml_stt.config import CoreMLSTTConfig
from heylook_coreml_stt.decoding import DecodeOptions, transcribe
from heylook_coreml_stt.folder import ModelFolder, load_folder
from heylook_coreml_stt.runner import CoreMLRunner, Runner

logger = logging.getLogger(__name__)


class CoreMLSTTProvider(ThreadedProvider[CoreMLSTTConfig]):
    def __init__(self, model_id: str, config: CoreMLSTTConfig, runner: Runner | None = None) -> None:
        super().__init__(model_id, config)
        self.folder: ModelFolder | None = None
        self.runner: Runner | None = runner

    def load_sync(self) -> None:
        self.folder = load_folder(self.config.model_path)  # shapes and tokenizer first: clear errors everywhere
        if self.runner is None:
            self.runner = CoreMLRunner(self.folder, self.config.compute_units)
        logger.info(
            "loaded %s: %d mel bins, %.0f s windows, %s",
            self.model_id,
            self.folder.n_mels,
            self.folder.window_seconds,
            "multilingual" if self.folder.tokenizer.multilingual else "English-only",
        )

    def unload_sync(self) -> None:
        self.runner = None
        self.folder = None

    def transcribe_sync(self, audio: AudioInput, request: TranscriptionRequest) -> Transcription:
        assert self.folder is not None and self.runner is not None
        tokenizer = self.folder.tokenizer
        language = request.language.lower() if request.language else None
        if language is not None and language not in tokenizer.languages:
            known = ", ".join(sorted(tokenizer.languages)) or "none"
            raise BadRequestError(
                f"model '{self.model_id}' does not know language '{request.language}'; it knows: {known}",
                param="language",
            )
        if request.task == "translate" and (not tokenizer.multilingual or tokenizer.translate is None):
            raise BadRequestError(f"model '{self.model_id}' is English-only and cannot translate", param="model")
        options = DecodeOptions(
            beam_size=self.config.beam_size,
            temperature=request.temperature or 0.0,
            language=language,
            task=request.task,
            prompt=request.prompt,
        )
        samples = np.frombuffer(audio.samples, dtype="<f4")
        return transcribe(self.runner, self.folder, samples, options)
