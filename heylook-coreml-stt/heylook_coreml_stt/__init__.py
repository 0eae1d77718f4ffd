"""heylook provider for speech-to-text with Core ML Whisper models (prediction on macOS)."""

from importlib import metadata as _metadata

try:
    __version__ = _metadata.version("heylook-coreml-stt")  # written once, in pyproject.toml
except _metadata.PackageNotFoundError:  # pragma: no cover - a source tree that was never installed
    __version__ = "0+unknown"
