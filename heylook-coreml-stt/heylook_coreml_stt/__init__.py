"""heylook provider for speech-to-text with Core ML Whisper models (prediction on macOS)."""

__version__ = "0.1.0"
