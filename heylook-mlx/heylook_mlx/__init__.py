"""heylook-mlx: the MLX backend (mlx-lm for text, mlx-vlm for vision, mlx-embeddings for embeddings)."""

from importlib import metadata as _metadata

try:
    __version__ = _metadata.version("heylook-mlx")  # written once, in pyproject.toml
except _metadata.PackageNotFoundError:  # pragma: no cover - a source tree that was never installed
    __version__ = "0+unknown"
