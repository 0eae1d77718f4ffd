"""Checks of speech-to-text: the response formats, timestamps, word timestamps and (with known speech) the words.

The clip is the target's ``audio`` (with ``audio_text``, the words in it), else speech the suite synthesises with
``espeak-ng`` when it is on ``PATH``, else a tone (the format checks run, the words check is skipped).
"""

from __future__ import annotations

import math
import re
import shutil
import struct
import subprocess
import tempfile
import wave
from pathlib import Path
from typing import Any

import pytest

from heylook_core import Parameter
from heylook_core.conformance.session import Subject, error_of

SPOKEN = "the quick brown fox jumps over the lazy dog"
_TIMESTAMP = r"\d\d:\d\d:\d\d[,.]\d\d\d"


def _pad(source: Path, target: Path, seconds: float) -> None:
    """``source`` with ``seconds`` of silence either side (Whisper hears a first word better after a pause)."""
    with wave.open(str(source), "rb") as reader:
        params = reader.getparams()
        frames = reader.readframes(params.nframes)
    silence = b"\x00" * (int(params.framerate * seconds) * params.sampwidth * params.nchannels)
    with wave.open(str(target), "wb") as writer:
        writer.setparams(params)
        writer.writeframes(silence + frames + silence)


def _tone(target: Path, seconds: float = 2.0, rate: int = 16000) -> None:
    with wave.open(str(target), "wb") as writer:
        writer.setnchannels(1)
        writer.setsampwidth(2)
        writer.setframerate(rate)
        samples = (int(8000 * math.sin(2 * math.pi * 440 * n / rate)) for n in range(int(seconds * rate)))
        writer.writeframes(b"".join(struct.pack("<h", s) for s in samples))


def clip_for(heylook: Subject) -> tuple[Path, str | None]:
    """The clip to transcribe and the words spoken in it (``None``: not known)."""
    target = heylook.target
    if target.audio is not None:
        return target.audio, target.audio_text
    if heylook.served.clip is not None:
        return heylook.served.clip
    folder = Path(tempfile.mkdtemp(prefix="heylook-conformance-"))
    clip: tuple[Path, str | None]
    if shutil.which("espeak-ng"):
        raw = folder / "raw.wav"
        subprocess.run(["espeak-ng", "-v", "en-us", "-s", "130", "-w", str(raw), SPOKEN], check=True)
        _pad(raw, folder / "speech.wav", 0.5)
        clip = (folder / "speech.wav", SPOKEN)
    else:
        _tone(folder / "tone.wav")
        clip = (folder / "tone.wav", None)
    heylook.served.clip = clip
    return clip


def _duration(path: Path) -> float | None:
    try:
        with wave.open(str(path), "rb") as reader:
            return reader.getnframes() / reader.getframerate()
    except (wave.Error, EOFError):
        return None  # not a wav: the duration is not checked


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9']+", text.lower())


class AudioChecks:
    def _transcribe(self, heylook: Subject, clip: Path, **fields: str) -> Any:
        """The SDK's transcription (a typed object for json and verbose_json, a string for the others)."""
        transcriptions: Any = heylook.served.openai.audio.transcriptions  # (its overloads want literal formats)
        with clip.open("rb") as handle:
            return transcriptions.create(model=heylook.id, file=handle, **fields)

    def _heard(self, heylook: Subject, clip: Path) -> Any:
        """The ``json`` transcription of ``clip`` (made once per model)."""
        key = str(clip)
        if key not in heylook.transcriptions:
            heylook.transcriptions[key] = self._transcribe(heylook, clip)
        return heylook.transcriptions[key]

    def test_transcription_formats(self, heylook: Subject) -> None:
        """``json``, ``text``, ``verbose_json`` (segments in order, inside the clip), ``srt`` and ``vtt``."""
        heylook.require("transcription")
        clip, _ = clip_for(heylook)
        as_json = self._heard(heylook, clip)
        assert isinstance(as_json.text, str)
        as_text = self._transcribe(heylook, clip, response_format="text")
        assert isinstance(as_text, str) and as_text.strip() == as_json.text.strip()
        verbose = self._transcribe(heylook, clip, response_format="verbose_json")
        duration = _duration(clip)
        if duration is not None:
            assert abs(verbose.duration - duration) < 0.5, f"duration {verbose.duration}, clip {duration:.2f} s"
        assert isinstance(verbose.language, str) and verbose.language
        last = 0.0
        for segment in verbose.segments or []:
            assert last - 0.01 <= segment.start <= segment.end, f"segments out of order: {segment}"
            if duration is not None:
                assert segment.end <= duration + 0.5, f"a segment ends after the clip: {segment}"
            last = segment.start
        srt = self._transcribe(heylook, clip, response_format="srt")
        assert isinstance(srt, str)
        if srt.strip():
            assert re.match(rf"1\s*\n{_TIMESTAMP} --> {_TIMESTAMP}", srt.strip()), srt[:200]
        vtt = self._transcribe(heylook, clip, response_format="vtt")
        assert isinstance(vtt, str) and vtt.startswith("WEBVTT"), vtt[:200]

    def test_transcription_words(self, heylook: Subject) -> None:
        """Known speech comes back as (most of) its words."""
        heylook.require("transcription")
        clip, spoken = clip_for(heylook)
        if spoken is None:
            pytest.skip("no known speech: give --heylook-audio and --heylook-audio-text, or install espeak-ng")
        heard = set(_words(self._heard(heylook, clip).text))
        expected = _words(spoken)
        found = [word for word in expected if word in heard]
        assert len(found) >= 0.6 * len(expected), f"heard {sorted(heard)}; expected {expected}"

    def test_word_timestamps(self, heylook: Subject) -> None:
        """Word timestamps where ``word_timestamps`` is declared; a 400 naming the parameter where not."""
        heylook.require("transcription")
        clip, _ = clip_for(heylook)
        with clip.open("rb") as handle:
            response = heylook.served.http.post(
                "/v1/audio/transcriptions",
                data={"model": heylook.id, "response_format": "verbose_json", "timestamp_granularities[]": "word"},
                files={"file": (clip.name, handle, "audio/wav")},
            )
        if Parameter.WORD_TIMESTAMPS not in heylook.parameters:
            assert response.status_code == 400, response.text
            assert error_of(response)["param"] == "timestamp_granularities[]"
            return
        assert response.status_code == 200, response.text
        words = response.json().get("words")
        assert isinstance(words, list), response.json()
        for word in words:
            assert 0 <= word["start"] <= word["end"], word

    def test_transcription_temperature(self, heylook: Subject) -> None:
        """``temperature`` is accepted where declared and a 400 naming it where not."""
        heylook.require("transcription")
        clip, _ = clip_for(heylook)
        with clip.open("rb") as handle:
            response = heylook.served.http.post(
                "/v1/audio/transcriptions",
                data={"model": heylook.id, "temperature": "0"},  # (greedy: the cheapest decoding)
                files={"file": (clip.name, handle, "audio/wav")},
            )
        if "temperature" in heylook.parameters:
            assert response.status_code == 200, response.text
        else:
            assert response.status_code == 400, response.text
            assert error_of(response)["param"] == "temperature"

    def test_translation(self, heylook: Subject) -> None:
        """A translating model answers ``/v1/audio/translations`` with text; others with a 400 naming the model."""
        heylook.require("transcription")
        clip, _ = clip_for(heylook)
        with clip.open("rb") as handle:
            response = heylook.served.http.post(
                "/v1/audio/translations", data={"model": heylook.id}, files={"file": (clip.name, handle, "audio/wav")}
            )
        if heylook.has("translation"):
            assert response.status_code == 200, response.text
            assert isinstance(response.json()["text"], str)
        else:
            assert response.status_code == 400, response.text
            assert error_of(response)["param"] == "model"


__all__ = ["AudioChecks", "clip_for"]
