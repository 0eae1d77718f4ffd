"""heylook provider for speech-to-text with faster-whisper (CTranslate2)."""

from importlib import metadata as _metadata

try:
    __version__ = _metadata.version("heylook-faster-whisper")  # written once, in pyproject.toml
except _metadata.PackageNotFoundError:  # pragma: no cover - a source tree that was never installed
    __version__ = "0+unknown"
