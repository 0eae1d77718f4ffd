"""Audio for the speech-to-text endpoints: decoding uploads, enforcing limits, and formatting transcriptions.

Uploads are decoded with PyAV (the ``audio`` extra: ``pip install 'heylook-core[audio]'``). PyAV was chosen over
soundfile because its wheels bundle ffmpeg, so m4a/AAC, mp3, ogg (Vorbis and Opus), flac and wav all decode on
every platform without a system library; libsndfile (soundfile) has no AAC/m4a decoder. Everything is resampled
by ffmpeg's resampler to what every engine receives: 16 kHz mono float32 (:class:`~heylook_core.types.AudioInput`).

Only container formats that hold audio are accepted: ffmpeg's playlist demuxers (HLS, concat) would open other
files or URLs named inside the upload, so an upload detected as one of those is refused before it is read.
"""

from __future__ import annotations

import io
import json
import logging
import sys
from typing import Any

from heylook_core.errors import BadRequestError, HeylookError
from heylook_core.types import AudioInput, Transcription, TranscriptionRequest

logger = logging.getLogger(__name__)

SAMPLE_RATE = 16000

# ffmpeg demuxer names (AVInputFormat.name, comma-joined aliases as PyAV reports them) that may carry audio.
ALLOWED_FORMATS = frozenset(
    {
        "wav",
        "w64",
        "flac",
        "mp3",
        "ogg",
        "mov,mp4,m4a,3gp,3g2,mj2",
        "matroska,webm",
        "aac",
        "aiff",
        "caf",
        "au",
        "amr",
        "wv",
        "asf",
        "avi",
        "mpeg",
        "mpegts",
        "flv",
        "ac3",
        "eac3",
        "dts",
        "opus",
    }
)
FILE_TYPES = "wav, flac, mp3, ogg, opus, m4a, mp4, webm, aac, aiff"


class DecoderMissingError(HeylookError):
    """The server was installed without the audio decoder (an optional dependency): 501, naming the extra."""

    status_code = 501
    error_type = "server_error"
    default_code = "audio_decoder_missing"


def _import_av() -> Any:
    try:
        import av
    except ImportError as error:
        raise DecoderMissingError(
            "this server cannot decode audio uploads: PyAV (the optional 'audio' extra) is not installed; "
            "install it with: pip install 'heylook-core[audio]'"
        ) from error
    return av


def decode_audio(data: bytes, *, filename: str = "file", max_seconds: float | None = None) -> AudioInput:
    """Decode an uploaded file into 16 kHz mono float32; a 400 naming the problem when it is not usable audio.

    ``max_seconds`` is the server's ``max_audio_seconds``: longer audio is refused (decoding stops there).
    """
    if not data:
        raise BadRequestError(f"the uploaded file '{filename}' is empty", param="file", code="empty_file")
    av = _import_av()
    try:
        container = av.open(io.BytesIO(data), mode="r", metadata_errors="ignore")
    except av.error.FFmpegError as error:
        raise _not_audio(filename, f"it could not be read as audio ({_reason(error)})") from error
    except Exception as error:  # the upload is untrusted: whatever the demuxer trips on is the file's fault
        logger.debug("audio open failed", exc_info=True)
        raise _not_audio(filename, f"it could not be read as audio ({type(error).__name__}: {error})") from error
    with container:
        if container.format.name not in ALLOWED_FORMATS:
            raise _not_audio(filename, f"its format '{container.format.name}' is not an audio format")
        if not container.streams.audio:
            raise _not_audio(filename, "it contains no audio stream")
        stream = container.streams.audio[0]
        limit = None if max_seconds is None else int(max_seconds * SAMPLE_RATE)
        resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
        pieces: list[bytes] = []
        count = 0
        try:
            for frame in container.decode(stream):
                for out in resampler.resample(frame):
                    count += _append(pieces, out)
                if limit is not None and count > limit:
                    raise _too_long(max_seconds)
            for out in resampler.resample(None):
                count += _append(pieces, out)
        except av.error.FFmpegError as error:
            raise _not_audio(filename, f"its audio could not be decoded ({_reason(error)})") from error
        except (ValueError, OSError, UnicodeDecodeError) as error:
            raise _not_audio(filename, f"its audio could not be decoded ({type(error).__name__}: {error})") from error
    if limit is not None and count > limit:
        raise _too_long(max_seconds)
    if count == 0:
        raise _not_audio(filename, "it contains no audio samples")
    samples = b"".join(pieces)
    if sys.byteorder != "little":  # pragma: no cover - every supported platform is little-endian
        import array

        values = array.array("f", samples)
        values.byteswap()
        samples = values.tobytes()
    return AudioInput(samples=samples, sample_rate=SAMPLE_RATE)


def _append(pieces: list[bytes], frame: Any) -> int:
    """Add one packed mono float frame's samples; the plane buffer may carry alignment padding."""
    samples = int(frame.samples)
    if samples:
        pieces.append(bytes(frame.planes[0])[: samples * 4])
    return samples


def _reason(error: Exception) -> str:
    return getattr(error, "strerror", None) or str(error)


def _not_audio(filename: str, why: str) -> BadRequestError:
    return BadRequestError(
        f"the uploaded file '{filename}' is not audio heylook can decode: {why}; send one of: {FILE_TYPES}",
        param="file",
        code="invalid_audio",
    )


def _too_long(max_seconds: float | None) -> BadRequestError:
    return BadRequestError(
        f"the audio is longer than the limit of {max_seconds:g} seconds (max_audio_seconds); "
        "split it or raise [server] max_audio_seconds",
        param="file",
        code="audio_too_long",
    )


# ---------------------------------------------------------------------------------------------------------------
# Response formats


def format_transcription(result: Transcription, request: TranscriptionRequest) -> tuple[str, str]:
    """The response body and its media type for ``request.response_format``."""
    kind = request.response_format
    if kind == "json":
        return json.dumps({"text": result.text}, ensure_ascii=False), "application/json"
    if kind == "verbose_json":
        return json.dumps(verbose_json(result, request), ensure_ascii=False), "application/json"
    if kind == "text":
        return result.text + "\n", "text/plain; charset=utf-8"
    if kind == "srt":
        return to_srt(result), "text/plain; charset=utf-8"
    return to_vtt(result), "text/plain; charset=utf-8"


def verbose_json(result: Transcription, request: TranscriptionRequest) -> dict[str, Any]:
    body: dict[str, Any] = {
        "task": request.task,
        "language": result.language,
        "duration": round(result.duration, 3),
        "text": result.text,
        "segments": [
            {
                "id": segment.id,
                "seek": int(round(segment.start * 100)),
                "start": round(segment.start, 3),
                "end": round(segment.end, 3),
                "text": segment.text,
                "tokens": list(segment.tokens),
                "temperature": segment.temperature,
                "avg_logprob": segment.avg_logprob,
                "compression_ratio": segment.compression_ratio,
                "no_speech_prob": segment.no_speech_prob,
            }
            for segment in result.segments
        ],
    }
    if "word" in request.timestamp_granularities:
        body["words"] = [
            {"word": word.word, "start": round(word.start, 3), "end": round(word.end, 3)} for word in result.words or []
        ]
    return body


def _timestamp(seconds: float, separator: str) -> str:
    millis = max(0, int(round(seconds * 1000)))
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    secs, millis = divmod(millis, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{separator}{millis:03d}"


def _cues(result: Transcription) -> list[tuple[float, float, str]]:
    if result.segments:
        return [(s.start, s.end, s.text.strip()) for s in result.segments if s.text.strip()]
    return [(0.0, result.duration, result.text.strip())] if result.text.strip() else []


def to_srt(result: Transcription) -> str:
    blocks = [
        f"{index}\n{_timestamp(start, ',')} --> {_timestamp(end, ',')}\n{text}\n"
        for index, (start, end, text) in enumerate(_cues(result), start=1)
    ]
    return "\n".join(blocks)


def to_vtt(result: Transcription) -> str:
    blocks = [f"{_timestamp(start, '.')} --> {_timestamp(end, '.')}\n{text}\n" for start, end, text in _cues(result)]
    return "WEBVTT\n\n" + "\n".join(blocks)
