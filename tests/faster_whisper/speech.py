"""Test speech made at test time with espeak-ng and sox (installed by scripts/stt-test-deps.sh)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

SENTENCES = [
    "hello world this is a test",
    "the quick brown fox jumps over the lazy dog",
    "she sells sea shells by the sea shore",
    "a stitch in time saves nine",
    "all that glitters is not gold",
    "the early bird catches the worm",
    "actions speak louder than words",
    "every cloud has a silver lining",
]


def require_tools() -> None:
    missing = [tool for tool in ("espeak-ng", "sox") if shutil.which(tool) is None]
    if missing:
        raise RuntimeError(f"missing {', '.join(missing)}: run scripts/stt-test-deps.sh first")


def speak(text: str, path: Path, *, pad: float = 0.5) -> Path:
    """``text`` spoken by espeak-ng (British English, 120 words per minute) as a 22.05 kHz wav, with ``pad``
    seconds of silence either side (Whisper tiny hears a first word better after a breath of silence)."""
    require_tools()
    raw = path.with_name(path.stem + "-raw.wav")
    subprocess.run(["espeak-ng", "-v", "en-gb", "-s", "120", "-g", "5", text, "-w", str(raw)], check=True)
    subprocess.run(["sox", str(raw), str(path), "pad", f"{pad}", f"{pad}"], check=True)
    raw.unlink()
    return path


def duration(path: Path) -> float:
    return float(subprocess.run(["soxi", "-D", str(path)], check=True, capture_output=True, text=True).stdout)


def long_clip(folder: Path, seconds: float = 60.0) -> tuple[Path, list[tuple[str, float]]]:
    """Sentences with silence between them, padded to exactly ``seconds``; returns the clip and each sentence's start.

    The silence between sentences grows so the speech spreads over the whole clip, past Whisper's 30 s window.
    """
    parts = [speak(text, folder / f"sentence-{index}.wav", pad=0.0) for index, text in enumerate(SENTENCES)]
    spoken = sum(duration(part) for part in parts)
    gap = (seconds - 1.0 - spoken) / len(parts)
    if gap < 0.5:
        raise ValueError(f"{seconds} s is too short for the sentences ({spoken:.1f} s of speech)")
    padded = []
    starts = []
    clock = 0.5
    for index, part in enumerate(parts):
        out = folder / f"padded-{index}.wav"
        head = 0.5 if index == 0 else 0.0
        subprocess.run(["sox", str(part), str(out), "pad", f"{head}", f"{gap}"], check=True)
        starts.append((SENTENCES[index], clock))
        clock += duration(part) + gap
        padded.append(str(out))
    clip = folder / f"long-{int(seconds)}s.wav"
    subprocess.run(["sox", *padded, str(clip), "pad", "0", "1"], check=True)
    subprocess.run(["sox", str(clip), str(folder / "trimmed.wav"), "trim", "0", f"{seconds}"], check=True)
    (folder / "trimmed.wav").replace(clip)
    return clip, starts


def convert(source: Path, suffix: str) -> Path:
    """``source`` re-encoded as mp3 or m4a with PyAV (sox cannot write those), or flac/ogg with sox."""
    target = source.with_suffix("." + suffix)
    if suffix in ("flac", "ogg"):
        subprocess.run(["sox", str(source), str(target)], check=True)
        return target
    import av

    fmt, codec = {"mp3": ("mp3", "libmp3lame"), "m4a": ("ipod", "aac")}[suffix]
    with av.open(str(source)) as reader, av.open(str(target), "w", format=fmt) as writer:
        stream = writer.add_stream(codec, rate=reader.streams.audio[0].rate, layout="mono")
        for frame in reader.decode(audio=0):
            frame.pts = None
            for packet in stream.encode(frame):
                writer.mux(packet)
        for packet in stream.encode(None):
            writer.mux(packet)
    return target
