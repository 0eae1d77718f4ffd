"""Core overhead: heylook with the echo provider vs a bare FastAPI endpoint, both measured in one run.

Both servers run under uvicorn (same loop and HTTP implementation) as subprocesses on loopback; one client process
measures them alternately. Non-streamed: sequential requests, p50/p99 latency and requests/s. Streamed: chunks/s
over long streams. Run: ``python bench/overhead.py`` (after ``pip install . ./plugins/heylook-echo``).

Protocol adapters: the same generation (same prompt, same tokens) through each wire protocol heylook serves, in the
same run, against Chat Completions: p50 per non-streamed request and token events per second streamed.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx

HERE = Path(__file__).resolve().parent
CONFIG = '[[models]]\nid = "echo"\nprovider = "echo"\n[models.config]\ntoken_delay_ms = 0\ncontext_length = 100000\n'


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def run_server(command: list[str], port: int, env: dict[str, str]) -> Iterator[str]:
    process = subprocess.Popen(command, env={**os.environ, **env}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            with contextlib.suppress(httpx.HTTPError):
                httpx.post(url + "/v1/chat/completions", json={"messages": [{"role": "user", "content": "x"}]})
                break
            time.sleep(0.1)
        else:
            raise RuntimeError(f"server did not start: {' '.join(command)}")
        yield url
    finally:
        process.terminate()
        process.wait(10)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def measure_requests(client: httpx.Client, url: str, count: int) -> dict[str, float]:
    body = {"model": "echo", "messages": [{"role": "user", "content": "hello there general"}], "max_tokens": 16}
    latencies = []
    for _ in range(20):
        client.post(url + "/v1/chat/completions", json=body)
    start = time.perf_counter()
    for _ in range(count):
        t = time.perf_counter()
        response = client.post(url + "/v1/chat/completions", json=body)
        latencies.append(time.perf_counter() - t)
        assert response.status_code == 200, response.text
    total = time.perf_counter() - start
    return {
        "rps": count / total,
        "p50_ms": percentile(latencies, 0.5) * 1000,
        "p99_ms": percentile(latencies, 0.99) * 1000,
    }


def measure_stream(client: httpx.Client, url: str, streams: int, tokens: int) -> float:
    body = {"model": "echo", "messages": [{"role": "user", "content": "go"}], "max_tokens": tokens, "stream": True}
    chunks = 0
    start = time.perf_counter()
    for _ in range(streams):
        with client.stream("POST", url + "/v1/chat/completions", json=body) as response:
            for line in response.iter_lines():
                if line.startswith("data: {"):
                    chunks += 1
    return chunks / (time.perf_counter() - start)


# Each protocol: its route, a request body for (prompt, max tokens, stream), and the prefix of an SSE/NDJSON line that
# carries one token.
PROTOCOLS: dict[str, tuple[str, Callable[[str, int, bool], dict[str, Any]], bytes]] = {
    "chat completions": (
        "/v1/chat/completions",
        lambda text, tokens, stream: {
            "model": "echo",
            "messages": [{"role": "user", "content": text}],
            "max_tokens": tokens,
            "stream": stream,
        },
        b'data: {"id":',
    ),
    "responses": (
        "/v1/responses",
        lambda text, tokens, stream: {
            "model": "echo",
            "input": text,
            "max_output_tokens": tokens,
            "stream": stream,
            "store": False,
        },
        b'data: {"type":"response.output_text.delta"',
    ),
    "messages": (
        "/v1/messages",
        lambda text, tokens, stream: {
            "model": "echo",
            "messages": [{"role": "user", "content": text}],
            "max_tokens": tokens,
            "stream": stream,
        },
        b'data: {"type":"content_block_delta"',
    ),
    "ollama": (
        "/api/chat",
        lambda text, tokens, stream: {
            "model": "echo",
            "messages": [{"role": "user", "content": text}],
            "options": {"num_predict": tokens},
            "stream": stream,
        },
        b'"done":false}',
    ),
}


def measure_protocol(client: httpx.Client, url: str, name: str, count: int, streams: int, tokens: int) -> dict:
    route, body_for, token_line = PROTOCOLS[name]
    body = body_for("hello there general", 16, False)
    for _ in range(20):
        client.post(url + route, json=body)
    latencies = []
    for _ in range(count):
        t = time.perf_counter()
        response = client.post(url + route, json=body)
        latencies.append(time.perf_counter() - t)
        assert response.status_code == 200, response.text
    events = 0
    body = body_for("go", tokens, True)
    start = time.perf_counter()
    for _ in range(streams):
        with client.stream("POST", url + route, json=body) as response:
            tail = b""  # the client reads raw bytes, so that its own parsing weighs the same for every protocol
            for chunk in response.iter_raw():
                data = tail + chunk
                events += data.count(token_line)
                tail = data[-(len(token_line) - 1) :]
    elapsed = time.perf_counter() - start
    return {"p50_ms": percentile(latencies, 0.5) * 1000, "events_per_s": events / elapsed, "events": events}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--streams", type=int, default=10)
    parser.add_argument("--tokens", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--protocols", default=",".join(PROTOCOLS), help="protocol columns, comma-separated")
    args = parser.parse_args()
    protocols = [name for name in args.protocols.split(",") if name]

    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "models.toml"
        config.write_text(CONFIG)
        heylook_port, bare_port = free_port(), free_port()
        heylook_cmd = [
            sys.executable,
            "-m",
            "heylook_core.cli",
            "--log-level",
            "warning",
            "serve",
            "--config",
            str(config),
            "--port",
            str(heylook_port),
        ]
        bare_cmd = [
            sys.executable,
            "-m",
            "uvicorn",
            "bare_app:app",
            "--port",
            str(bare_port),
            "--log-level",
            "warning",
            "--no-access-log",
            "--app-dir",
            str(HERE),
        ]
        env = {"HEYLOOK_LOAD_PLUGINS": "echo"}
        results: dict[str, list[dict[str, float]]] = {"bare": [], "heylook": []}
        adapters: dict[str, list[dict[str, float]]] = {name: [] for name in protocols}
        with run_server(heylook_cmd, heylook_port, env) as heylook_url, run_server(bare_cmd, bare_port, {}) as bare_url:
            with httpx.Client(timeout=60) as client:
                for _ in range(args.rounds):  # alternate so both see the same machine state
                    for name, url in (("bare", bare_url), ("heylook", heylook_url)):
                        stats = measure_requests(client, url, args.requests)
                        stats["chunks_per_s"] = measure_stream(client, url, args.streams, args.tokens)
                        results[name].append(stats)
                    for name in protocols:  # the same generation through each protocol, alternating
                        stats = measure_protocol(
                            client, heylook_url, name, args.requests // 2, args.streams, args.tokens
                        )
                        adapters[name].append(stats)

    def med(name: str, key: str) -> float:
        return statistics.median(r[key] for r in results[name])

    rows = [
        ("requests/s (sequential, non-streamed)", "rps", "{:.0f}"),
        ("p50 latency (ms)", "p50_ms", "{:.3f}"),
        ("p99 latency (ms)", "p99_ms", "{:.3f}"),
        ("streamed chunks/s", "chunks_per_s", "{:.0f}"),
    ]
    print("| measure | bare FastAPI | heylook + echo | ratio |")
    print("| --- | --- | --- | --- |")
    for label, key, fmt in rows:
        bare, heylook = med("bare", key), med("heylook", key)
        print(f"| {label} | {fmt.format(bare)} | {fmt.format(heylook)} | {heylook / bare:.2f} |")
    added = med("heylook", "p50_ms") - med("bare", "p50_ms")
    print(
        f"\nAdded per request at p50: {added:.3f} ms (target: under 1 ms). Medians of {args.rounds} rounds, "
        f"{args.requests} requests and {args.streams} streams of {args.tokens} tokens per round."
    )

    if not protocols:
        return
    base = protocols[0]

    def amed(name: str, key: str) -> float:
        return statistics.median(r[key] for r in adapters[name])

    print(f"\n| protocol | p50 non-streamed (ms) | token events/s streamed | per token vs {base} |")
    print("| --- | --- | --- | --- |")
    for name in protocols:
        extra = 1 / amed(name, "events_per_s") - 1 / amed(base, "events_per_s")
        ratio = amed(base, "events_per_s") / amed(name, "events_per_s") - 1
        print(
            f"| {name} | {amed(name, 'p50_ms'):.3f} | {amed(name, 'events_per_s'):.0f} | "
            f"{ratio * 100:+.1f} % ({extra * 1e6:+.1f} us) |"
        )
    print(
        f"\nEach protocol streamed {adapters[base][0]['events']:.0f} token events per round "
        "(target: under 5 % per token)."
    )


if __name__ == "__main__":
    main()
