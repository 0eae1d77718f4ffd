"""The speech-to-text routes with the echo provider: decoding every upload format, limits, response formats, errors.

Test audio is synthesized here (tones encoded with PyAV), never committed. The echo provider describes the decoded
audio's length ("audio from 0.0 to 2.0 seconds"), so the text shows what the decoder produced.
"""

from __future__ import annotations

import io
import json
import math
import struct
import types
from collections.abc import Callable, Iterator
from pathlib import Path

import av
import httpx
import openai
import pytest
from fastapi.testclient import TestClient

from heylook_core import Capability, ProviderSpec, hookimpl
from heylook_core.app import create_app
from heylook_core.audio import decode_audio, to_srt, to_vtt
from heylook_core.errors import BadRequestError
from heylook_core.server import build_server
from heylook_core.testing import serve, write_config
from heylook_core.types import Segment, Transcription

CONFIG = """
default_model = "echo"
[server]
max_body_bytes = 400000
max_audio_seconds = 40
[[models]]
id = "echo"
provider = "echo"
[[models]]
id = "chatty"
provider = "chat_only"
"""

FORMATS = {  # file suffix: (container format, codec, sample rate)
    "wav": ("wav", "pcm_s16le", 44100),
    "flac": ("flac", "flac", 48000),
    "mp3": ("mp3", "libmp3lame", 44100),
    "ogg": ("ogg", "libopus", 48000),
    "m4a": ("ipod", "aac", 22050),
}


def tone(seconds: float, suffix: str = "wav", *, channels: int = 1) -> bytes:
    """A 440 Hz tone of ``seconds`` encoded as ``suffix``."""
    fmt, codec, rate = FORMATS[suffix]
    buffer = io.BytesIO()
    with av.open(buffer, "w", format=fmt) as container:
        stream = container.add_stream(codec, rate=rate, layout="stereo" if channels == 2 else "mono")
        total = int(seconds * rate)
        step = 1024
        for start in range(0, total, step):
            count = min(step, total - start)
            values = [0.3 * math.sin(2 * math.pi * 440 * (start + i) / rate) for i in range(count)]
            pcm = struct.pack(f"<{count}h", *(int(v * 32767) for v in values)) * channels
            frame = av.AudioFrame(format="s16p" if channels == 2 else "s16", layout=stream.layout.name, samples=count)
            for plane in range(len(frame.planes)):
                frame.planes[plane].update(pcm[plane * count * 2 : (plane + 1) * count * 2] if channels == 2 else pcm)
            frame.sample_rate = rate
            frame.pts = start
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return buffer.getvalue()


def _chat_only_plugin() -> types.ModuleType:
    from heylook_echo.config import EchoConfig
    from heylook_echo.provider import EchoProvider

    module = types.ModuleType("chat_only_plugin")

    @hookimpl
    def register_providers(register: Callable[[ProviderSpec], None]) -> None:
        register(
            ProviderSpec(name="chat_only", factory=lambda: EchoProvider, capabilities=frozenset({Capability.CHAT}))
        )
        register(
            ProviderSpec(
                name="stt_without_parameters",
                factory=lambda: EchoProvider,
                config_schema=EchoConfig,
                capabilities=frozenset({Capability.TRANSCRIPTION}),
            )
        )

    module.register_providers = register_providers  # type: ignore[attr-defined]
    return module


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    config = write_config(tmp_path_factory.mktemp("audio"), CONFIG)
    server = build_server(config, extra_plugins=[("chat_only", _chat_only_plugin())])
    with TestClient(create_app(server), base_url="http://127.0.0.1") as test_client:
        yield test_client


def post(client: TestClient, data: bytes, name: str = "clip.wav", **fields: str) -> httpx.Response:
    return client.post("/v1/audio/transcriptions", files={"file": (name, data)}, data=fields)


# ---------------------------------------------------------------------------------------------------------------
# Decoding


@pytest.mark.parametrize("suffix", sorted(FORMATS))
def test_every_format_decodes_to_16k_mono_float(suffix: str) -> None:
    audio = decode_audio(tone(2.0, suffix), filename=f"clip.{suffix}")
    assert audio.sample_rate == 16000
    assert len(audio.samples) % 4 == 0
    # Lossy codecs pad a few frames at either end; the length stays within 60 ms of 2 s.
    assert audio.duration == pytest.approx(2.0, abs=0.06)
    values = struct.unpack(f"<{len(audio.samples) // 4}f", audio.samples)
    middle = values[len(values) // 4 : len(values) // 2]
    peak = max(abs(v) for v in middle)
    assert 0.2 < peak < 0.4, peak  # the 0.3 amplitude tone survives the resampler


def test_stereo_is_mixed_to_mono() -> None:
    audio = decode_audio(tone(1.0, "flac", channels=2))
    assert audio.duration == pytest.approx(1.0, abs=0.01)


def test_decode_errors_name_the_problem() -> None:
    with pytest.raises(BadRequestError, match="'notes.txt' is not audio heylook can decode"):
        decode_audio(b"these are meeting notes, not audio\n" * 30, filename="notes.txt")
    with pytest.raises(BadRequestError, match="'empty.wav' is empty"):
        decode_audio(b"", filename="empty.wav")
    with pytest.raises(BadRequestError, match=r"longer than the limit of 1.5 seconds \(max_audio_seconds\)"):
        decode_audio(tone(3.0), max_seconds=1.5)


def test_playlists_naming_other_files_are_refused(tmp_path: Path) -> None:
    (tmp_path / "inner.wav").write_bytes(tone(1.0))
    playlist = f"ffconcat version 1.0\nfile {tmp_path / 'inner.wav'}\n".encode()
    with pytest.raises(BadRequestError, match="not audio heylook can decode"):
        decode_audio(playlist, filename="list.txt")


# ---------------------------------------------------------------------------------------------------------------
# Routes


def test_json_is_the_default_format(client: TestClient) -> None:
    response = post(client, tone(2.0), model="echo")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert response.json() == {"text": "audio from 0.0 to 2.0 seconds"}


def test_long_audio_reaches_the_provider_whole(client: TestClient) -> None:
    response = post(client, tone(35.0, "ogg"), response_format="verbose_json")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["duration"] == pytest.approx(35.0, abs=0.05)
    assert [(s["start"], s["end"]) for s in body["segments"]] == [(0.0, 30.0), (30.0, pytest.approx(35.0, abs=0.05))]
    assert body["task"] == "transcribe"
    assert body["language"] == "en"
    assert set(body["segments"][0]) == {
        "id",
        "seek",
        "start",
        "end",
        "text",
        "tokens",
        "temperature",
        "avg_logprob",
        "compression_ratio",
        "no_speech_prob",
    }


def test_text_srt_and_vtt_are_plain_text(client: TestClient) -> None:
    text = post(client, tone(1.0), response_format="text")
    assert text.headers["content-type"].startswith("text/plain")
    assert text.text == "audio from 0.0 to 1.0 seconds\n"
    srt = post(client, tone(1.0), response_format="srt")
    assert srt.text == "1\n00:00:00,000 --> 00:00:01,000\naudio from 0.0 to 1.0 seconds\n"
    vtt = post(client, tone(1.0), response_format="vtt")
    assert vtt.text == "WEBVTT\n\n00:00:00.000 --> 00:00:01.000\naudio from 0.0 to 1.0 seconds\n"


def test_subtitle_timestamps_past_an_hour() -> None:
    result = Transcription(
        text="a b",
        language="en",
        duration=3725.5,
        segments=[Segment(0, 0.0, 1.25, " a"), Segment(1, 3723.04, 3725.5, " b")],
    )
    assert to_srt(result).splitlines()[5] == "01:02:03,040 --> 01:02:05,500"
    assert to_vtt(result).endswith("01:02:03.040 --> 01:02:05.500\nb\n")


def test_language_reaches_the_provider(client: TestClient) -> None:
    body = post(client, tone(1.0), language="de", response_format="verbose_json").json()
    assert body["language"] == "de"


def test_translation_endpoint(client: TestClient) -> None:
    response = client.post(
        "/v1/audio/translations", files={"file": ("a.mp3", tone(1.0, "mp3"))}, data={"response_format": "verbose_json"}
    )
    assert response.status_code == 200, response.text
    assert response.json()["task"] == "translate"


def test_transcription_request_to_a_chat_model(client: TestClient) -> None:
    response = post(client, tone(1.0), model="chatty")
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["param"] == "model"
    assert "model 'chatty' does not support audio transcription" in error["message"]
    assert "its capabilities: chat" in error["message"]
    translation = client.post("/v1/audio/translations", files={"file": ("a.wav", tone(1.0))}, data={"model": "chatty"})
    assert translation.status_code == 400
    assert "does not support audio translation" in translation.json()["error"]["message"]


def test_word_timestamps_need_a_model_that_offers_them(client: TestClient) -> None:
    response = client.post(
        "/v1/audio/transcriptions",
        files={"file": ("a.wav", tone(1.0))},
        data={"timestamp_granularities[]": ["word", "segment"], "response_format": "verbose_json"},
    )
    assert response.status_code == 400
    assert "model 'echo' does not support word timestamps" in response.json()["error"]["message"]


def test_temperature_needs_a_model_that_honours_it(client: TestClient, tmp_path: Path) -> None:
    config = write_config(tmp_path, '[[models]]\nid = "plain-stt"\nprovider = "stt_without_parameters"\n')
    server = build_server(config, extra_plugins=[("chat_only", _chat_only_plugin())])
    with TestClient(create_app(server), base_url="http://127.0.0.1") as plain:
        refused = post(plain, tone(1.0), model="plain-stt", temperature="0.2")
        assert refused.status_code == 400
        error = refused.json()["error"]
        assert (error["param"], error["type"]) == ("temperature", "invalid_request_error")
        assert "model 'plain-stt' does not support the parameter 'temperature'" in error["message"]
        assert post(plain, tone(1.0), model="plain-stt").status_code == 200
    assert post(client, tone(1.0), model="echo", temperature="0.2").status_code == 200  # echo honours it


def test_bad_uploads_get_400_or_413(client: TestClient) -> None:
    not_audio = post(client, b"%PDF-1.4 this is not audio at all" * 20, name="report.pdf")
    assert not_audio.status_code == 400
    assert "'report.pdf' is not audio heylook can decode" in not_audio.json()["error"]["message"]
    assert not_audio.json()["error"]["param"] == "file"

    empty = post(client, b"", name="empty.wav")
    assert empty.status_code == 400
    assert "'empty.wav' is empty" in empty.json()["error"]["message"]

    too_long = post(client, tone(45.0, "mp3"), name="long.mp3")
    assert too_long.status_code == 400
    assert "limit of 40 seconds (max_audio_seconds)" in too_long.json()["error"]["message"]

    too_big = post(client, tone(10.0), name="big.wav")  # 10 s of 44.1 kHz 16-bit PCM: 882 kB
    assert too_big.status_code == 413
    assert "max_body_bytes" in too_big.json()["error"]["message"]

    missing = client.post("/v1/audio/transcriptions", data={"model": "echo"})
    assert missing.status_code == 400
    assert missing.json()["error"]["message"] == "file: field required"

    bad_format = post(client, tone(1.0), response_format="mp3")
    assert bad_format.status_code == 400
    assert bad_format.json()["error"]["param"] == "response_format"

    unknown = post(client, tone(1.0), model="nope")
    assert unknown.status_code == 404
    assert unknown.json()["error"]["code"] == "model_not_found"


def test_chat_to_a_transcription_only_model_is_refused() -> None:
    from heylook_core.config import ModelEntry, configure_model
    from heylook_core.errors import UnsupportedError
    from heylook_core.generation import check_request
    from heylook_core.types import ChatRequest

    spec = ProviderSpec(name="stt", factory=lambda: None, capabilities=frozenset({Capability.TRANSCRIPTION}))  # type: ignore[arg-type,return-value]
    model = configure_model(ModelEntry(id="whisper", provider="stt"), {"stt": spec}, "test")
    with pytest.raises(
        UnsupportedError, match=r"model 'whisper' does not support 'chat' \(its capabilities: transcription\)"
    ):
        check_request(model, ChatRequest(messages=[{"role": "user", "content": "hi"}]), Capability.CHAT)


# ---------------------------------------------------------------------------------------------------------------
# Through `heylookllm serve` with the openai SDK


def test_openai_sdk_against_the_server(tmp_path: Path) -> None:
    config = write_config(tmp_path, CONFIG.replace('provider = "chat_only"', 'provider = "echo"'))
    (tmp_path / "clip.m4a").write_bytes(tone(3.0, "m4a"))
    with serve(config) as server:
        client = openai.OpenAI(base_url=server.base_url, api_key="unused", max_retries=0)
        with open(tmp_path / "clip.m4a", "rb") as handle:
            text = client.audio.transcriptions.create(model="echo", file=handle, response_format="text")
        assert text.strip() == "audio from 0.0 to 3.0 seconds"
        with open(tmp_path / "clip.m4a", "rb") as handle:
            verbose = client.audio.transcriptions.create(model="echo", file=handle, response_format="verbose_json")
        assert verbose.duration == pytest.approx(3.0, abs=0.06)
        assert verbose.segments[0].end == pytest.approx(3.0, abs=0.06)
        with pytest.raises(openai.BadRequestError) as caught:
            client.audio.transcriptions.create(model="echo", file=("notes.txt", b"plain words " * 50))
        assert "not audio heylook can decode" in json.dumps(caught.value.body)
