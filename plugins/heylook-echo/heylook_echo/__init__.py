"""heylook-echo: a deterministic provider for tests, benchmarks and as a template for provider plugins."""

__version__ = "0.1.0"
