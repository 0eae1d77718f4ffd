"""heylook provider for GGUF models through llama-cpp-python (``provider = "llama_cpp"``).

The entry point module :mod:`heylook_llamacpp.plugin` is light; :mod:`heylook_llamacpp.provider` imports
``llama_cpp`` and is loaded only when a model is first loaded.
"""

__version__ = "0.1.0"
