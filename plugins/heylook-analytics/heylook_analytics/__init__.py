"""Request analytics for heylook: one DuckDB row per chat or completion generation, no content."""
