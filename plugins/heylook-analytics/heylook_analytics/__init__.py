"""Request analytics for heylook: one DuckDB row per chat or completion generation, no content."""

from importlib import metadata as _metadata

try:
    __version__ = _metadata.version("heylook-analytics")  # written once, in pyproject.toml
except _metadata.PackageNotFoundError:  # pragma: no cover - a source tree that was never installed
    __version__ = "0+unknown"
