"""Prediction behind a small interface: the decoding loop only ever calls :class:`Runner`.

:class:`CoreMLRunner` runs the folder's packages with Core ML, which exists only on macOS. Anything else that
implements the two methods (the tests' numpy reference runner) drives the same front end and decoding loop.
"""

from __future__ import annotations

import logging
import platform
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

if TYPE_CHECKING:
    from heylook_coreml_stt.folder import ModelFolder

logger = logging.getLogger(__name__)

COMPUTE_UNITS = {"all": "ALL", "cpu_only": "CPU_ONLY", "cpu_and_gpu": "CPU_AND_GPU", "cpu_and_ne": "CPU_AND_NE"}


class Runner(Protocol):
    """The two predictions a Whisper-style model makes."""

    def encode(self, mel: np.ndarray) -> np.ndarray:
        """(1, n_mels, frames) float32 log-mel features of one window to (1, n_audio_ctx, n_state) audio features."""
        ...

    def decode(self, tokens: np.ndarray, features: np.ndarray) -> np.ndarray:
        """(1, n) int32 token ids and the window's audio features to (1, n, n_vocab) logits, one row per position."""
        ...


class PredictionUnavailableError(RuntimeError):
    """Core ML prediction was asked for where Core ML does not exist."""


def macos_required_message() -> str:
    return (
        f"Core ML prediction runs only on macOS; this host is {platform.system()} {platform.machine()}. "
        'On Linux serve speech-to-text with heylook-faster-whisper (provider = "faster_whisper")'
    )


class CoreMLRunner:
    """Runs the encoder and decoder packages with Core ML on the configured compute units."""

    def __init__(self, folder: ModelFolder, compute_units: str = "all") -> None:
        # platform.system(), not sys.platform: mypy would take the rest as unreachable on Linux and skip checking it
        if platform.system() != "Darwin":
            raise PredictionUnavailableError(macos_required_message())
        import coremltools as ct

        units = getattr(ct.ComputeUnit, COMPUTE_UNITS[compute_units])
        self.folder = folder
        self.encoder = self._load(ct, folder.encoder.path, units)
        self.decoder = self._load(ct, folder.decoder.path, units)
        self._mel_dtype = _numpy_dtype(folder.encoder.inputs[0].dtype)
        self._features_dtype = _numpy_dtype(
            next(t for t in folder.decoder.inputs if t.name == folder.features_input).dtype
        )

    @staticmethod
    def _load(ct: Any, path: Any, units: Any) -> Any:
        if path.suffix.lower() == ".mlmodelc":
            return ct.models.CompiledMLModel(str(path), compute_units=units)
        return ct.models.MLModel(str(path), compute_units=units)

    def encode(self, mel: np.ndarray) -> np.ndarray:
        out = self.encoder.predict({self.folder.mel_input: mel.astype(self._mel_dtype)})
        return np.asarray(out[self.folder.features_output], dtype=np.float32)

    def decode(self, tokens: np.ndarray, features: np.ndarray) -> np.ndarray:
        count = tokens.shape[1]
        ids = tokens.astype(np.int32)
        if self.folder.fixed_tokens and count < self.folder.max_tokens:
            # A causal decoder's logits at position i depend on tokens 0..i only: padding after them is harmless.
            pad = np.full((1, self.folder.max_tokens - count), self.folder.tokenizer.eot, dtype=np.int32)
            ids = np.concatenate([ids, pad], axis=1)
        out = self.decoder.predict(
            {self.folder.tokens_input: ids, self.folder.features_input: features.astype(self._features_dtype)}
        )
        return np.asarray(out[self.folder.logits_output], dtype=np.float32)[:, :count]


def _numpy_dtype(name: str) -> type:
    return {"float16": np.float16, "double": np.float64}.get(name, np.float32)
