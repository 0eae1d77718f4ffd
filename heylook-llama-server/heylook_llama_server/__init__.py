"""heylook-llama-server: serve GGUF models through llama.cpp's own ``llama-server``, supervised or remote."""

__version__ = "0.1.0"
