"""heylook's web page: a chat and a server view, served by the core at ``/ui`` through ``register_routes``."""

from importlib import metadata as _metadata

try:
    __version__ = _metadata.version("heylook-webui")  # written once, in pyproject.toml
except _metadata.PackageNotFoundError:  # pragma: no cover - a source tree that was never installed
    __version__ = "0+unknown"
