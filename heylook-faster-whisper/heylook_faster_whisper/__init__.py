"""heylook provider for speech-to-text with faster-whisper (CTranslate2)."""

__version__ = "0.1.0"
