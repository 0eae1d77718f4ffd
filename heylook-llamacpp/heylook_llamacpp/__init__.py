"""heylook provider for GGUF models through llama-cpp-python (``provider = "llama_cpp"``).

The entry point module :mod:`heylook_llamacpp.plugin` is light; :mod:`heylook_llamacpp.provider` imports
``llama_cpp`` and is loaded only when a model is first loaded.
"""

from importlib import metadata as _metadata

try:
    __version__ = _metadata.version("heylook-llamacpp")  # written once, in pyproject.toml
except _metadata.PackageNotFoundError:  # pragma: no cover - a source tree that was never installed
    __version__ = "0+unknown"
