"""heylook-mlx: the MLX backend (mlx-lm for text, mlx-vlm for vision, mlx-embeddings for embeddings)."""

__version__ = "0.1.0"
