"""The conformance suite on faster-whisper with the real Whisper tiny.en: the transcription checks, on speech the
suite synthesises with espeak-ng (scripts/stt-test-deps.sh installs it)."""

from __future__ import annotations

import shutil

import pytest

from heylook_core.conformance import Target
from heylook_core.conformance.suite import ConformanceSuite
from heylook_faster_whisper.plugin import tiny_model_path

pytestmark = pytest.mark.slow


class TestConformance(ConformanceSuite):
    heylook_models = ("whisper",)

    @pytest.fixture(scope="class")
    @classmethod
    def heylook_target(cls, tmp_path_factory: pytest.TempPathFactory) -> Target:
        if shutil.which("espeak-ng") is None:
            pytest.fail("espeak-ng is missing: run scripts/stt-test-deps.sh (the suite speaks its test sentence)")
        folder = tmp_path_factory.mktemp("conformance")
        config = folder / "models.toml"
        config.write_text(
            f'[[models]]\nid = "whisper"\nprovider = "faster_whisper"\n[models.config]\n'
            f'model_path = "{tiny_model_path()}"\nbeam_size = 1\n',
            encoding="utf-8",
        )
        return Target(config=config, env={"HEYLOOK_LOAD_PLUGINS": "faster_whisper"}, cwd=folder)
