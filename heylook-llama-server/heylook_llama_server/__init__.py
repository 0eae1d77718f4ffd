"""heylook-llama-server: serve GGUF models through llama.cpp's own ``llama-server``, supervised or remote."""

from importlib import metadata as _metadata

try:
    __version__ = _metadata.version("heylook-llama-server")  # written once, in pyproject.toml
except _metadata.PackageNotFoundError:  # pragma: no cover - a source tree that was never installed
    __version__ = "0+unknown"
