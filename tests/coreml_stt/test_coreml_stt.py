"""heylook-coreml-stt: model-folder checks on real coremltools packages, the front end against faster-whisper's, the
decoding loop against numpy reference runners, the routes with the openai SDK, and what a user sees off macOS.

Packages and audio are made at test time (support.py). Tests marked ``macos`` predict with Core ML for real.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import platform
import subprocess
import sys
import types
import wave
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import openai
import pytest
from fastapi.testclient import TestClient

from heylook_core import Capability, ProviderSpec, hookimpl
from heylook_core.app import create_app
from heylook_core.server import build_server
from heylook_core.testing import heylookllm_command, serve, write_config
from heylook_core.types import AudioInput, TranscriptionRequest
from heylook_coreml_stt.decoding import DecodeOptions, Decoder, split_window, transcribe
from heylook_coreml_stt.folder import ModelFolderError, load_folder
from heylook_coreml_stt.frontend import log_mel, mel_filters, pad_or_trim
from heylook_coreml_stt.plugin import SPEC, CoreMLSTTConfig
from heylook_coreml_stt.provider import CoreMLSTTProvider
from heylook_coreml_stt.runner import CoreMLRunner, PredictionUnavailableError, macos_required_message
from heylook_coreml_stt.tokenizer import WhisperTokenizer
from tests.coreml_stt.support import (
    WORD_IDS,
    WORDS,
    BigramRunner,
    EnergyRunner,
    StubReference,
    build_folder,
    vocab_size,
    write_compiled_metadata,
    write_tokenizer,
)

RATE = 16000
# Loud stretches (seconds) in a 70 s clip. The fifth and eighth straddle window ends: the first window covers
# 0-30 s and ends inside (29.0, 31.5), so the second resumes after the last closed segment, at 28.5 s, and covers
# 28.5-58.5 s, which ends inside (55.5, 60.4); the third resumes at 55.0 s.
BURSTS = [
    (0.5, 2.0),
    (6.0, 6.6),
    (12.0, 14.5),
    (26.0, 28.5),
    (29.0, 31.5),
    (40.0, 40.8),
    (52.0, 55.0),
    (55.5, 60.4),
    (66.0, 67.5),
]
CLIP_SECONDS = 70.0


def noise_bursts(bursts: list[tuple[float, float]], seconds: float, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    samples = np.zeros(int(seconds * RATE), dtype=np.float32)
    for start, end in bursts:
        a, b = int(start * RATE), int(end * RATE)
        samples[a:b] = (rng.standard_normal(b - a) * 0.2).astype(np.float32)
    return samples


def wav_bytes(samples: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(RATE)
        out.writeframes((np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes())
    return buffer.getvalue()


@pytest.fixture(scope="module")
def stub(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, StubReference]:
    folder = tmp_path_factory.mktemp("stub") / "whisper-stub"
    return folder, build_folder(folder)


# ---------------------------------------------------------------------------------------------------------------
# The model folder


def test_stub_packages_are_read_from_their_specs(stub: tuple[Path, StubReference]) -> None:
    folder = load_folder(stub[0])
    assert (folder.n_mels, folder.n_frames, folder.n_audio_ctx, folder.n_state) == (80, 3000, 1500, 8)
    assert folder.n_vocab == vocab_size()
    assert (folder.max_tokens, folder.fixed_tokens) == (448, True)
    assert (folder.mel_input, folder.features_output) == ("mel", "audio_features")
    assert (folder.tokens_input, folder.features_input, folder.logits_output) == ("tokens", "features", "logits")
    assert folder.window_seconds == 30.0 and folder.input_stride == 2
    assert folder.encoder.inputs[0].dtype == "float32" and folder.decoder.inputs[0].dtype == "int32"
    assert not folder.tokenizer.multilingual


def test_other_shapes_are_taken_from_the_model(tmp_path: Path) -> None:
    build_folder(tmp_path, n_mels=128, frames=1500, languages=("en", "de", "fr"), flexible_tokens=True, n_tokens=224)
    folder = load_folder(tmp_path)
    assert (folder.n_mels, folder.n_frames, folder.n_audio_ctx) == (128, 1500, 750)
    assert folder.window_seconds == 15.0
    assert (folder.max_tokens, folder.fixed_tokens) == (224, False)
    assert folder.tokenizer.multilingual and sorted(folder.tokenizer.languages) == ["de", "en", "fr"]


def test_missing_tokenizer(tmp_path: Path) -> None:
    build_folder(tmp_path, tokenizer=False)
    with pytest.raises(ModelFolderError) as caught:
        load_folder(tmp_path)
    assert str(caught.value) == (
        f"{tmp_path}: tokenizer.json is missing; copy Whisper's tokenizer.json (the one that matches the model) "
        "into the model folder"
    )


def test_tokenizer_that_is_not_whisper(tmp_path: Path) -> None:
    write_tokenizer(tmp_path / "tokenizer.json", whisper=False)
    with pytest.raises(ModelFolderError, match="is not a Whisper tokenizer: it lacks <|endoftext|>"):
        load_folder(tmp_path)


def test_missing_decoder(tmp_path: Path) -> None:
    build_folder(tmp_path)
    import shutil

    shutil.rmtree(tmp_path / "decoder.mlpackage")
    with pytest.raises(
        ModelFolderError,
        match=r"no decoder model: expected decoder.mlpackage or decoder.mlmodelc "
        r"\(found: encoder.mlpackage\)",
    ):
        load_folder(tmp_path)


def test_wrong_mel_shape(tmp_path: Path) -> None:
    build_folder(tmp_path, n_mels=64)
    with pytest.raises(
        ModelFolderError,
        match=r"input 'mel' has shape \(1, 64, 3000\); expected \(1, 80 or 128, "
        r"frames\) log-mel features",
    ):
        load_folder(tmp_path)


def test_encoder_and_decoder_that_do_not_fit(tmp_path: Path) -> None:
    build_folder(tmp_path, decoder_ctx=750)
    with pytest.raises(
        ModelFolderError,
        match=r"input 'features' has shape \(1, 750, 8\) but the encoder gives "
        r"\(1, 1500, 8\); the encoder and decoder must come from the same model",
    ):
        load_folder(tmp_path)


def test_vocabulary_smaller_than_the_tokenizer(tmp_path: Path) -> None:
    build_folder(tmp_path, n_vocab=len(WORDS) + 20)
    with pytest.raises(
        ModelFolderError,
        match=f"has {len(WORDS) + 20} logits per token but the tokenizer's "
        f"vocabulary with 30 s of timestamps needs {vocab_size()}",
    ):
        load_folder(tmp_path)


def test_compiled_models_are_read_from_their_metadata(tmp_path: Path) -> None:
    write_tokenizer(tmp_path / "tokenizer.json")
    v = vocab_size()
    write_compiled_metadata(
        tmp_path,
        "AudioEncoder",
        [{"name": "melspectrogram_features", "shape": "[1, 80, 3000]", "dataType": "Float16"}],
        [{"name": "encoder_output_embeds", "shape": "[1, 1500, 384]", "dataType": "Float16"}],
    )
    write_compiled_metadata(
        tmp_path,
        "TextDecoder",
        [
            {"name": "input_ids", "shape": "[1, 448]", "dataType": "Int32"},
            {"name": "encoder_output_embeds", "shape": "[1, 1500, 384]", "dataType": "Float16"},
        ],
        [{"name": "logits", "shape": f"[1, 448, {v}]", "dataType": "Float16"}],
    )
    folder = load_folder(tmp_path)
    assert folder.encoder.path.name == "AudioEncoder.mlmodelc"
    assert (folder.mel_input, folder.tokens_input, folder.n_state, folder.n_vocab) == (
        "melspectrogram_features",
        "input_ids",
        384,
        v,
    )
    assert folder.encoder.inputs[0].dtype == "float16"


def test_a_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(ModelFolderError, match="model folder '.*nowhere' does not exist"):
        load_folder(tmp_path / "nowhere")


# ---------------------------------------------------------------------------------------------------------------
# The front end


@pytest.mark.parametrize("n_mels", [80, 128])
def test_log_mel_matches_faster_whisper(n_mels: int) -> None:
    from faster_whisper.feature_extractor import FeatureExtractor

    samples = noise_bursts([(0.2, 1.1), (2.0, 2.5)], 3.0)
    reference = FeatureExtractor(feature_size=n_mels)(samples, padding=160)
    ours = log_mel(samples, n_mels, padding=160)
    assert ours.shape == reference.shape == (n_mels, 301)
    np.testing.assert_allclose(ours, reference, atol=1e-5)
    np.testing.assert_allclose(mel_filters(n_mels), FeatureExtractor.get_mel_filters(16000, 400, n_mels), atol=1e-7)
    assert pad_or_trim(ours, 3000).shape == (n_mels, 3000)
    assert pad_or_trim(ours, 100).shape == (n_mels, 100)


# ---------------------------------------------------------------------------------------------------------------
# The decoding loop against reference runners


def test_long_audio_segments_follow_the_sound(stub: tuple[Path, StubReference]) -> None:
    folder = load_folder(stub[0])
    runner = EnergyRunner(stub[0] / "tokenizer.json", folder.n_vocab)
    samples = noise_bursts(BURSTS, CLIP_SECONDS)
    result = transcribe(runner, folder, samples, DecodeOptions())
    assert result.duration == CLIP_SECONDS
    found = [(s.start, s.end, s.text) for s in result.segments]
    assert len(found) == len(BURSTS), found
    for (start, end, text), (want_start, want_end) in zip(found, BURSTS, strict=True):
        assert start == pytest.approx(want_start, abs=0.06), found
        assert end == pytest.approx(want_end, abs=0.06), found
        assert text == (" long" if want_end - want_start >= 1.0 else " short")
    assert [s.id for s in result.segments] == list(range(len(BURSTS)))
    assert result.text == "".join(text for _, _, text in found).strip()


def test_beam_search_finds_what_greedy_misses(tmp_path: Path) -> None:
    tokenizer = WhisperTokenizer(tmp_path / "t.json") if write_tokenizer(tmp_path / "t.json") else None
    assert tokenizer is not None
    ids = WORD_IDS
    n_vocab = vocab_size()
    table = np.full((n_vocab, n_vocab), -1e4, dtype=np.float32)
    table[tokenizer.no_timestamps, ids["A"]] = np.log(0.6)
    table[tokenizer.no_timestamps, ids["B"]] = np.log(0.4)
    for i in range(10):
        table[ids["A"], ids[f"w{i}"]] = np.log(0.1)
        table[ids[f"w{i}"], tokenizer.eot] = 0.0
    table[ids["B"], ids["C"]] = np.log(0.95)
    table[ids["B"], ids["w0"]] = np.log(0.05)
    table[ids["C"], tokenizer.eot] = 0.0

    def run(beam_size: int) -> tuple[str, float]:
        options = DecodeOptions(beam_size=beam_size, without_timestamps=True)
        result = Decoder(BigramRunner(table), tokenizer, n_vocab, 448, 30.0, options).decode_window(np.zeros(1))
        return tokenizer.decode(result.tokens), result.sum_logprob

    greedy, greedy_score = run(1)
    beam, beam_score = run(3)
    assert greedy == " A w0" and greedy_score == pytest.approx(np.log(0.06), abs=1e-4)
    assert beam == " B C" and beam_score == pytest.approx(np.log(0.38), abs=1e-4)


def test_prompt_language_and_task_prefix(tmp_path: Path) -> None:
    write_tokenizer(tmp_path / "tokenizer.json", ("en", "de"))
    tokenizer = WhisperTokenizer(tmp_path / "tokenizer.json")
    options = DecodeOptions(language="de", task="translate", prompt="hello world")
    prefix, sot_index = Decoder(BigramRunner(np.zeros((1, 1))), tokenizer, 0, 448, 30.0, options).prefix()
    assert prefix == [
        tokenizer.sot_prev,
        WORD_IDS["hello"],
        WORD_IDS["world"],
        tokenizer.sot,
        tokenizer.languages["de"],
        tokenizer.translate,
    ]
    assert sot_index == 3


def test_window_split_rules(stub: tuple[Path, StubReference]) -> None:
    tokenizer = load_folder(stub[0]).tokenizer
    b, word = tokenizer.timestamp_begin, WORD_IDS["hello"]
    # Two closed segments: the window is done.
    pieces, advance = split_window([b, word, b + 50, b + 60, word, b + 100], tokenizer, 3000, 2)
    assert pieces == [(0.0, 1.0, [word]), (1.2, 2.0, [word])] and advance == 3000
    # The second segment is still open at the window's end: resume where the last closed one ended (1.0 s = 100
    # frames), as Whisper does, so the open segment is decoded whole in the next window.
    pieces, advance = split_window([b, word, b + 50, b + 60, word], tokenizer, 3000, 2)
    assert pieces == [(0.0, 1.0, [word])] and advance == 100
    # No timestamps at all: one segment for the whole window.
    pieces, advance = split_window([word, word], tokenizer, 1000, 2)
    assert pieces == [(0.0, 10.0, [word, word])] and advance == 1000


def test_silence_gives_no_segments(stub: tuple[Path, StubReference]) -> None:
    folder = load_folder(stub[0])
    runner = EnergyRunner(stub[0] / "tokenizer.json", folder.n_vocab)
    result = transcribe(runner, folder, np.zeros(RATE * 5, dtype=np.float32), DecodeOptions())
    assert result.segments == [] and result.text == ""


# ---------------------------------------------------------------------------------------------------------------
# The provider and the routes, with the reference runner standing in for Core ML's prediction


def _reference_plugin(folder: Path) -> types.ModuleType:
    class ReferenceProvider(CoreMLSTTProvider):
        def load_sync(self) -> None:
            n_vocab = load_folder(self.config.model_path).n_vocab
            self.runner = EnergyRunner(folder / "tokenizer.json", n_vocab)
            super().load_sync()

    module = types.ModuleType("coreml_reference_plugin")

    @hookimpl
    def register_providers(register: Callable[[ProviderSpec], None]) -> None:
        register(
            ProviderSpec(
                name="coreml_reference",
                factory=lambda: ReferenceProvider,
                config_schema=CoreMLSTTConfig,
                capabilities=SPEC.capabilities,
                parameters=SPEC.parameters,
            )
        )

    module.register_providers = register_providers  # type: ignore[attr-defined]
    return module


@pytest.fixture(scope="module")
def sdk(stub: tuple[Path, StubReference], tmp_path_factory: pytest.TempPathFactory) -> Iterator[openai.OpenAI]:
    folder = stub[0]
    config = write_config(
        tmp_path_factory.mktemp("config"),
        f"""
[[models]]
id = "coreml"
provider = "coreml_reference"
[models.config]
model_path = "{folder}"
""",
    )
    server = build_server(config, extra_plugins=[("coreml_reference", _reference_plugin(folder))], entry_points=False)
    with TestClient(create_app(server), base_url="http://127.0.0.1") as http:
        yield openai.OpenAI(base_url="http://127.0.0.1/v1", api_key="unused", http_client=http, max_retries=0)


def test_every_response_format_through_the_routes(sdk: openai.OpenAI) -> None:
    clip = ("bursts.wav", wav_bytes(noise_bursts(BURSTS, CLIP_SECONDS)))
    verbose = sdk.audio.transcriptions.create(model="coreml", file=clip, response_format="verbose_json")
    assert verbose.duration == pytest.approx(CLIP_SECONDS, abs=0.01)
    segments = verbose.segments or []
    assert [round(s.start, 1) for s in segments] == [round(a, 1) for a, _ in BURSTS]
    starts = [s.start for s in segments]
    assert starts == sorted(starts) and all(s.end > s.start for s in segments)
    assert verbose.text == "long short long long long short long long long"

    assert sdk.audio.transcriptions.create(model="coreml", file=clip).text == verbose.text
    text = sdk.audio.transcriptions.create(model="coreml", file=clip, response_format="text")
    assert text == verbose.text + "\n"
    srt = sdk.audio.transcriptions.create(model="coreml", file=clip, response_format="srt")
    assert srt.startswith("1\n00:00:00,500 --> 00:00:02,0")
    assert "\n5\n00:00:29,000 --> 00:00:31,5" in srt
    vtt = sdk.audio.transcriptions.create(model="coreml", file=clip, response_format="vtt")
    assert vtt.startswith("WEBVTT\n\n00:00:00.500 --> 00:00:02.0")


def test_requests_the_model_refuses(sdk: openai.OpenAI) -> None:
    clip = ("bursts.wav", wav_bytes(noise_bursts(BURSTS[:1], 3.0)))
    with pytest.raises(openai.BadRequestError) as language:
        sdk.audio.transcriptions.create(model="coreml", file=clip, language="de")
    assert "model 'coreml' does not know language 'de'; it knows: en" in language.value.message
    with pytest.raises(openai.BadRequestError) as words:
        sdk.audio.transcriptions.create(
            model="coreml", file=clip, timestamp_granularities=["word"], response_format="verbose_json"
        )
    assert "does not support word timestamps" in words.value.message
    with pytest.raises(openai.BadRequestError) as chat:
        sdk.chat.completions.create(model="coreml", messages=[{"role": "user", "content": "hi"}])
    assert "model 'coreml' does not support 'chat' (its capabilities: transcription)" in chat.value.message


def test_provider_on_its_worker_thread(stub: tuple[Path, StubReference]) -> None:
    folder = stub[0]
    config = CoreMLSTTConfig(model_path=str(folder), beam_size=2)
    runner = EnergyRunner(folder / "tokenizer.json", load_folder(folder).n_vocab)
    provider = CoreMLSTTProvider("coreml", config, runner=runner)

    async def run() -> list[tuple[float, float]]:
        await provider.load()
        try:
            audio = AudioInput(noise_bursts(BURSTS[:3], 20.0).astype("<f4").tobytes())
            result = await provider.transcribe(audio, TranscriptionRequest(response_format="verbose_json"))
        finally:
            await provider.unload()
        return [(s.start, s.end) for s in result.segments]

    found = asyncio.run(run())
    assert [round(a, 1) for a, _ in found] == [0.5, 6.0, 12.0]


# ---------------------------------------------------------------------------------------------------------------
# Off macOS


@pytest.mark.skipif(sys.platform == "darwin", reason="checks the message shown off macOS")
def test_predicting_off_macos_names_the_way_out(stub: tuple[Path, StubReference]) -> None:
    import platform

    folder = load_folder(stub[0])
    with pytest.raises(PredictionUnavailableError) as caught:
        CoreMLRunner(folder, "cpu_only")
    assert str(caught.value) == (
        f"Core ML prediction runs only on macOS; this host is {platform.system()} {platform.machine()}. "
        'On Linux serve speech-to-text with heylook-faster-whisper (provider = "faster_whisper")'
    )
    assert str(caught.value) == macos_required_message()


@pytest.mark.skipif(sys.platform == "darwin", reason="checks what a Linux user of the server sees")
def test_server_and_doctor_off_macos(stub: tuple[Path, StubReference], tmp_path: Path) -> None:
    config = write_config(
        tmp_path,
        f"""
[[models]]
id = "coreml"
provider = "coreml_stt"
[models.config]
model_path = "{stub[0]}"
[[models]]
id = "no-tokenizer"
provider = "coreml_stt"
[models.config]
model_path = "{tmp_path}"
""",
    )
    env = {"HEYLOOK_LOAD_PLUGINS": "coreml_stt"}
    doctor = subprocess.run(
        [*heylookllm_command(), "doctor", "--config", str(config)],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
    )
    assert "[fail] provider coreml_stt (plugin coreml_stt): needs macOS: Core ML prediction runs only on macOS" in (
        doctor.stdout
    ), doctor.stdout
    assert 'fix: on this host use heylook-faster-whisper (provider = "faster_whisper")' in doctor.stdout
    clip = ("a.wav", wav_bytes(noise_bursts([(0.2, 1.0)], 2.0)))
    with (
        serve(config, env=env) as process,
        openai.OpenAI(base_url=process.base_url, api_key="unused", max_retries=0) as client,
    ):
        with pytest.raises(openai.APIStatusError) as caught:
            client.audio.transcriptions.create(model="coreml", file=clip)
        assert caught.value.status_code == 503
        # the client gets the model and a reason class; the backend's own words (and paths) are in the log
        assert "model 'coreml' failed to load: the backend raised PredictionUnavailableError" in caught.value.message
        with pytest.raises(openai.APIStatusError) as missing:
            client.audio.transcriptions.create(model="no-tokenizer", file=clip)
        assert missing.value.status_code == 503
        assert "model 'no-tokenizer' failed to load" in missing.value.message
        assert "tokenizer.json is missing" not in missing.value.message
        log = process.log()
        assert f"Core ML prediction runs only on macOS; this host is {platform.system()}" in log
        assert "tokenizer.json is missing" in log


def test_plugin_load_does_not_import_the_engine() -> None:
    code = (
        "import sys, heylook_coreml_stt.plugin as p; p.check();"
        "print([m for m in ('coremltools', 'numpy', 'tokenizers') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_config_schema_rejects_unknown_keys() -> None:
    with pytest.raises(ValueError, match="compute_units"):
        CoreMLSTTConfig(model_path="x", compute_units="gpu")
    assert SPEC.capabilities_for(CoreMLSTTConfig(model_path="x", translate=True)) == frozenset(
        {Capability.TRANSCRIPTION, Capability.TRANSLATION}
    )


# ---------------------------------------------------------------------------------------------------------------
# On macOS: real Core ML prediction


@pytest.mark.macos
def test_core_ml_matches_the_numpy_twin(stub: tuple[Path, StubReference]) -> None:
    folder = load_folder(stub[0])
    runner = CoreMLRunner(folder, "cpu_only")
    reference = stub[1]
    mel = pad_or_trim(log_mel(noise_bursts([(0.5, 2.0)], 3.0), 80), 3000)[None]
    features = runner.encode(mel)
    np.testing.assert_allclose(features, reference.encode(mel), atol=1e-3)
    tokens = np.array([[folder.tokenizer.sot, 3, 4]], dtype=np.int32)
    np.testing.assert_allclose(runner.decode(tokens, features), reference.decode(tokens, features), atol=1e-3)


@pytest.mark.macos
def test_core_ml_transcribes_through_the_server(stub: tuple[Path, StubReference], tmp_path: Path) -> None:
    config = write_config(
        tmp_path,
        f"""
[[models]]
id = "coreml"
provider = "coreml_stt"
[models.config]
model_path = "{stub[0]}"
compute_units = "cpu_only"
""",
    )
    with (
        serve(config, env={"HEYLOOK_LOAD_PLUGINS": "coreml_stt"}) as process,
        openai.OpenAI(base_url=process.base_url, api_key="unused", max_retries=0) as client,
    ):
        clip = ("a.wav", wav_bytes(noise_bursts([(0.5, 2.0)], 40.0)))
        result = client.audio.transcriptions.create(model="coreml", file=clip, response_format="verbose_json")
        assert result.duration == pytest.approx(40.0, abs=0.01)
        assert json.loads(result.model_dump_json())["task"] == "transcribe"


def test_language_detection_on_multilingual_models(tmp_path: Path) -> None:
    write_tokenizer(tmp_path / "tokenizer.json", ("en", "de", "fr"))
    tokenizer = WhisperTokenizer(tmp_path / "tokenizer.json")
    n_vocab = vocab_size(("en", "de", "fr"))
    table = np.zeros((n_vocab, n_vocab), dtype=np.float32)
    table[tokenizer.sot, tokenizer.languages["fr"]] = 3.0
    table[tokenizer.sot, tokenizer.languages["de"]] = 1.0
    table[tokenizer.sot, WORD_IDS["hello"]] = 9.0  # not a language: ignored
    decoder = Decoder(BigramRunner(table), tokenizer, n_vocab, 448, 30.0, DecodeOptions())
    assert decoder.detect_language(np.zeros(1)) == "fr"
