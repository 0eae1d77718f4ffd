"""heylook's web page: a chat and a server view, served by the core at ``/ui`` through ``register_routes``."""

__version__ = "0.1.0"
