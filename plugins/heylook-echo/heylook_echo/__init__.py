"""heylook-echo: a deterministic provider for tests, benchmarks and as a template for provider plugins."""

from importlib import metadata as _metadata

try:
    __version__ = _metadata.version("heylook-echo")  # written once, in pyproject.toml
except _metadata.PackageNotFoundError:  # pragma: no cover - a source tree that was never installed
    __version__ = "0+unknown"
