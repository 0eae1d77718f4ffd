"""MLX backend: raw mlx-lm ``stream_generate``, heylook and ``mlx_lm.server``, in one run, on the same generated models.

Measures, for a ~98k-parameter and a ~25M-parameter random llama (built once into the heylook cache dir):

* ``decode``: tokens/s streamed through ``heylookllm serve`` (SSE read with httpx) against ``stream_generate`` called
  directly in this process, with the same prompt, greedy sampling and the same logits processor (a bias that keeps
  the random model from ending early), and the time added per token;
* ``servers``: heylook side by side with ``mlx_lm.server`` (started here on the same model folder, prompt cache off
  in both), the same streaming client and requests, one stream and ``--streams`` concurrent streams: decode tokens/s
  and time to first token, and raw ``stream_generate`` in the same rotation. With ``concurrency`` in
  ``[models.config]`` (continuous batching) heylook's concurrent streams run on a model with ``concurrency`` set to
  ``--streams``; without it they queue, one at a time;
* ``cache``: time to first token on the second turn of a conversation with the prompt cache on and off;
* ``batch``: ``/v1/batch/chat/completions`` throughput against the same requests (sharing a long prefix, the prompt
  cache on) sent one after another, rounds alternating, and which way the endpoint ran them (its ``batching`` field);
* ``concurrency``: heylook alone, ``--streams`` concurrent streams against one, on a model with ``concurrency`` set to
  ``--streams`` (continuous batching) and on one with the default 1 (one at a time): all streams' tokens over the wall
  time from the first request sent to the last token, and the mean time to first token.

The batch and concurrency sections also give the server's CPU time per generated token (Linux): on a machine that
other work keeps busy the wall clock mostly measures the scheduler, the CPU time what the server spent.

Rounds alternate the contenders (in a rotating order) and keep the best of each, to damp noise from other work on the
machine; the servers section also gives the median of the per-round ratios. On a shared machine, pin the whole run to
one core (``taskset -c 1``): what each contender costs per token then shows in its speed.
Usage: ``python bench/mlx.py [--rounds 5] [--tokens 256] [--sizes tiny,small]
[--sections decode,servers,cache,batch,concurrency] [--streams 4] [--json out.json]``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

# This file is named like the `mlx` package: run as a script, its folder must not shadow it.
sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != Path(__file__).resolve().parent]

import httpx  # noqa: E402
from platformdirs import user_cache_dir  # noqa: E402

from heylook_core.testing import free_port, serve, stop_process, wait_healthy, write_config  # noqa: E402
from heylook_mlx.tiny import build_text_model, parameter_count  # noqa: E402

PROMPT = "Tell me a long story about a fox, a cat and a bird who travel from Paris to Berlin."


def cache_dir() -> Path:
    return Path(os.environ.get("HEYLOOK_CACHE") or user_cache_dir("heylook")) / "mlx-bench"


def model_folder(size: str) -> Path:
    folder = cache_dir() / f"llama-{size}"
    if not (folder / "model.safetensors").is_file():
        build_text_model(folder, size=size)
    return folder


def eos_of(folder: Path) -> int:
    return int(json.loads((folder / "config.json").read_text())["eos_token_id"])


def raw_decode(folder: Path, tokens: int) -> tuple[float, float]:
    """(decode tokens/s, seconds to first token) of ``stream_generate`` in this process."""
    import mlx.core as mx
    from mlx_lm import load, stream_generate
    from mlx_lm.sample_utils import make_logits_processors, make_sampler

    model, tokenizer = _loaded.get(folder) or _loaded.setdefault(folder, load(str(folder)))
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": PROMPT}], add_generation_prompt=True, enable_thinking=True, tokenize=False
    )
    prompt = mx.array(tokenizer.encode(text, add_special_tokens=False))
    processors = make_logits_processors(logit_bias={eos_of(folder): -100.0})
    start = time.perf_counter()
    first = last = 0.0
    count = 0
    for _response in stream_generate(
        model, tokenizer, prompt, max_tokens=tokens, sampler=make_sampler(temp=0.0), logits_processors=processors
    ):
        now = time.perf_counter()
        if count == 0:
            first = now
        last = now
        count += 1
    return (count - 1) / (last - first), first - start


_loaded: dict[Path, Any] = {}


def http_decode(client: httpx.Client, model: str, folder: Path, tokens: int) -> tuple[float, float]:
    """(decode tokens/s, seconds to first token) of a streamed chat request through heylook."""
    stream = Stream(str(client.base_url).rstrip("/"), chat_body(folder, tokens, model, {"enable_thinking": True}))
    stream.run(client)
    return stream.rate, stream.ttft


class Stream:
    """One streamed chat request, timed by the client: request sent, first and last token chunk, tokens."""

    def __init__(self, base_url: str, body: dict[str, Any]) -> None:
        self.base_url = base_url
        self.body = body
        self.start = self.first = self.last = 0.0
        self.tokens = 0

    def run(self, client: httpx.Client) -> Stream:
        self.start = time.perf_counter()
        chunks = 0
        with client.stream("POST", self.base_url + "/chat/completions", json=self.body) as response:
            response.raise_for_status()
            for line in response.iter_lines():
                if not line.startswith("data: {"):
                    continue
                chunk = json.loads(line[6:])
                if chunk.get("usage"):
                    self.tokens = chunk["usage"]["completion_tokens"]
                delta = chunk["choices"][0].get("delta", {}) if chunk.get("choices") else {}
                if delta.get("content") or delta.get("reasoning_content") or delta.get("reasoning"):
                    self.last = time.perf_counter()
                    if not chunks:
                        self.first = self.last
                    chunks += 1
        return self

    @property
    def ttft(self) -> float:
        return self.first - self.start

    @property
    def rate(self) -> float:
        """Decode tokens/s: the tokens after the first over the time from the first to the last."""
        return (self.tokens - 1) / (self.last - self.first)


def chat_body(folder: Path, tokens: int, model: str, extra: dict[str, Any]) -> dict[str, Any]:
    return {
        "model": model,
        "messages": [{"role": "user", "content": PROMPT}],
        "max_tokens": tokens,
        "temperature": 0,
        "logit_bias": {str(eos_of(folder)): -100},
        "stream": True,
        "stream_options": {"include_usage": True},
        **extra,
    }


def concurrent(base_url: str, bodies: list[dict[str, Any]], clients: list[httpx.Client]) -> dict[str, float]:
    """``len(bodies)`` streams at once: all their tokens over the wall time, and their mean time to first token."""
    streams = [Stream(base_url, body) for body in bodies]
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(streams))

    def one(stream: Stream, client: httpx.Client) -> None:
        try:
            barrier.wait()
            stream.run(client)
        except BaseException as error:  # reported below
            errors.append(error)

    threads = [threading.Thread(target=one, args=pair) for pair in zip(streams, clients, strict=True)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    wall = max(stream.last for stream in streams) - min(stream.start for stream in streams)
    tokens = sum(stream.tokens for stream in streams)
    ttft = statistics.fmean(stream.ttft for stream in streams)
    return {"tokens_per_s": tokens / wall, "ttft_s": ttft, "tokens": tokens}


def cpu_seconds(pid: int | None, thread: int | None = None) -> float | None:
    """CPU time so far of process ``pid``, all its threads or only ``thread`` (Linux ``/proc``; None elsewhere);
    ``pid`` None: this process."""
    if pid is None:
        return time.process_time()
    total = 0
    for path in Path(f"/proc/{pid}/task").glob(f"{thread or '*'}/schedstat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            total += int(path.read_text().split()[0])
    return total / 1e9 if total else None


@contextlib.contextmanager
def mlx_lm_server(folder: Path, timeout: float = 180) -> Iterator[tuple[str, int]]:
    """``python -m mlx_lm.server`` on ``folder`` with its prompt cache off; yields its ``/v1`` URL and its pid."""
    port = free_port()
    command = [sys.executable, "-m", "mlx_lm.server", "--model", str(folder), "--port", str(port)]
    command += ["--prompt-cache-size", "0", "--log-level", "WARNING"]
    log = tempfile.NamedTemporaryFile(prefix="mlx-lm-server-", suffix=".log", delete=False)  # noqa: SIM115
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/v1"
    try:
        wait_healthy(process, url + "/models", timeout, "mlx_lm.server", Path(log.name).read_text)
        yield url, process.pid
    finally:
        stop_process(process)
        log.close()


def heylook_supports_concurrency() -> bool:
    from heylook_mlx.plugin import MLXConfig

    return "concurrency" in MLXConfig.model_fields


def side_by_side(
    heylook: tuple[str, int], folder: Path, size: str, tokens: int, rounds: int, streams: int, batching: bool
) -> dict[str, Any]:
    """heylook, mlx_lm.server and raw ``stream_generate`` in a rotating order each round.

    Besides speed, each run's CPU time per generated token: of the server process (all its threads) for the two
    servers, of this process for raw generation; for heylook also of its event loop thread alone (what serving a
    token costs beside generating it). On a shared machine these vary far less than speed does.
    """
    think = {"enable_thinking": True}
    heylook_url, heylook_pid = heylook
    with mlx_lm_server(folder) as (mlx_url, mlx_pid):
        pids = {"heylook": heylook_pid, "mlx_lm": mlx_pid}
        clients = [httpx.Client(timeout=600) for _ in range(streams)]
        single = {
            "heylook": (heylook_url, chat_body(folder, tokens, f"{size}-nocache", think)),
            "mlx_lm": (mlx_url, chat_body(folder, tokens, "default_model", {"chat_template_kwargs": think})),
        }
        model_n = f"{size}-c{streams}" if batching else f"{size}-nocache"
        many = {
            "heylook": (heylook_url, chat_body(folder, tokens, model_n, think)),
            "mlx_lm": (mlx_url, chat_body(folder, tokens, "default_model", {"chat_template_kwargs": think})),
        }
        for url, body in (*single.values(), *many.values()):  # load and warm up
            Stream(url, {**body, "max_tokens": 8}).run(clients[0])
        raw_decode(folder, 8)
        samples: dict[str, list[dict[str, float]]] = {}

        def run(name: str) -> None:
            kind, _, server = name.partition(":")
            pid = pids.get(server)
            cpu = cpu_seconds(pid)
            loop_cpu = cpu_seconds(pid, pid) if server == "heylook" else None  # its main thread runs the event loop
            if kind == "raw":
                rate, ttft = raw_decode(folder, tokens)
                sample = {"tokens_per_s": rate, "ttft_s": ttft, "tokens": tokens}
            elif kind == "one":
                url, body = single[server]
                stream = Stream(url, body).run(clients[0])
                sample = {"tokens_per_s": stream.rate, "ttft_s": stream.ttft, "tokens": stream.tokens}
            else:
                url, body = many[server]
                sample = concurrent(url, [body] * streams, clients)
            after = cpu_seconds(pid)
            if cpu is not None and after is not None:
                sample["cpu_ms_per_token"] = (after - cpu) * 1000 / sample["tokens"]
            loop_after = cpu_seconds(pid, pid) if loop_cpu is not None else None
            if loop_cpu is not None and loop_after is not None:
                sample["event_loop_cpu_ms_per_token"] = (loop_after - loop_cpu) * 1000 / sample["tokens"]
            samples.setdefault(name, []).append(sample)

        order = ["raw", "one:heylook", "one:mlx_lm", "many:heylook", "many:mlx_lm"]
        for index in range(rounds):
            shift = index % len(order)
            for name in order[shift:] + order[:shift]:
                run(name)
        for client in clients:
            client.close()

    def best(name: str) -> dict[str, float]:
        runs = samples[name]
        figures = {
            "tokens_per_s": round(max(run["tokens_per_s"] for run in runs), 1),
            "median_tokens_per_s": round(statistics.median(run["tokens_per_s"] for run in runs), 1),
            "ttft_ms": round(min(run["ttft_s"] for run in runs) * 1000, 2),
        }
        for key in ("cpu_ms_per_token", "event_loop_cpu_ms_per_token"):
            if all(key in run for run in runs):
                figures[key] = round(statistics.median(run[key] for run in runs), 4)
        return figures

    def ratios(a: str, b: str) -> float:
        pairs = zip(samples[a], samples[b], strict=True)
        return round(statistics.median(x["tokens_per_s"] / y["tokens_per_s"] for x, y in pairs), 3)

    result: dict[str, Any] = {
        "tokens": tokens,
        "streams": streams,
        "heylook_batching": batching,
        "raw": best("raw"),
        "heylook_1": best("one:heylook"),
        "mlx_lm_1": best("one:mlx_lm"),
        f"heylook_{streams}": best("many:heylook"),
        f"mlx_lm_{streams}": best("many:mlx_lm"),
        "heylook_vs_mlx_lm_1": ratios("one:heylook", "one:mlx_lm"),
        f"heylook_vs_mlx_lm_{streams}": ratios("many:heylook", "many:mlx_lm"),
        "heylook_vs_raw_1": ratios("one:heylook", "raw"),
        "mlx_lm_vs_raw_1": ratios("one:mlx_lm", "raw"),
    }
    heylook_rate = result["heylook_1"]["tokens_per_s"]
    result["heylook_added_ms_per_token"] = round(1000 / heylook_rate - 1000 / result["raw"]["tokens_per_s"], 4)
    if "cpu_ms_per_token" in result["raw"]:
        for name in ("heylook_1", "mlx_lm_1"):
            if "cpu_ms_per_token" in result[name]:
                added = result[name]["cpu_ms_per_token"] - result["raw"]["cpu_ms_per_token"]
                result[f"{name}_added_cpu_ms_per_token"] = round(added, 4)
    return result


def ttft_turn_two(client: httpx.Client, model: str) -> float:
    """Seconds to the first streamed token of turn two of a conversation with a long first turn."""
    long_text = " ".join([PROMPT] * 12)
    first = {"model": model, "messages": [{"role": "user", "content": long_text}], "max_tokens": 16, "temperature": 0}
    reply = client.post("/chat/completions", json=first).json()["choices"][0]["message"]["content"]
    messages = first["messages"] + [
        {"role": "assistant", "content": reply},
        {"role": "user", "content": "And then what happened?"},
    ]
    body = {"model": model, "messages": messages, "max_tokens": 4, "temperature": 0, "stream": True}
    start = time.perf_counter()
    with client.stream("POST", "/chat/completions", json=body) as response:
        for line in response.iter_lines():
            if line.startswith("data: {") and json.loads(line[6:])["choices"][0]["delta"].get("content"):
                return time.perf_counter() - start
    raise RuntimeError("no token streamed")


def batch_requests(folder: Path, count: int, tokens: int, tag: str) -> list[dict[str, Any]]:
    """``count`` greedy requests sharing a long prefix (the prompt), each with its own ending."""
    return [
        {
            "messages": [{"role": "user", "content": f"{PROMPT} Part {index}, {tag}."}],
            "max_tokens": tokens,
            "temperature": 0,
            "logit_bias": {str(eos_of(folder)): -100},
        }
        for index in range(count)
    ]


def batch_versus_sequential(
    client: httpx.Client, pid: int, model: str, folder: Path, count: int, tokens: int, rounds: int
) -> dict[str, Any]:
    """The batch endpoint against the same kind of requests sent one after another, rounds alternating.

    Each round's requests end differently from the last round's, so that the prompt cache holds their shared prefix
    (as it would for a client) but never a whole prompt.
    """
    client.post("/batch/chat/completions", json={"model": model, "requests": batch_requests(folder, count, 2, "warm")})
    rates: dict[str, list[float]] = {"batch": [], "sequential": []}
    cpu: dict[str, list[float]] = {"batch": [], "sequential": []}
    batching: Any = None
    for index in range(rounds):
        order = ["batch", "sequential"] if index % 2 == 0 else ["sequential", "batch"]
        for kind in order:
            requests = batch_requests(folder, count, tokens, f"{kind} {index}")
            before = cpu_seconds(pid)
            start = time.perf_counter()
            if kind == "batch":
                answer = client.post("/batch/chat/completions", json={"model": model, "requests": requests}).json()
                batching = answer.get("batching")
                generated = sum(item["usage"]["completion_tokens"] for item in answer["data"])
            else:
                generated = 0
                for request in requests:
                    answer = client.post("/chat/completions", json={"model": model, **request}).json()
                    generated += answer["usage"]["completion_tokens"]
            rates[kind].append(generated / (time.perf_counter() - start))
            after = cpu_seconds(pid)
            if before is not None and after is not None:
                cpu[kind].append((after - before) * 1000 / generated)
    result: dict[str, Any] = {
        "requests": count,
        "tokens": tokens,
        "batch_tokens_per_s": round(max(rates["batch"]), 1),
        "sequential_tokens_per_s": round(max(rates["sequential"]), 1),
        "speedup": round(max(rates["batch"]) / max(rates["sequential"]), 2),
        "batching": batching,
    }
    if cpu["batch"] and cpu["sequential"]:
        result["batch_cpu_ms_per_token"] = round(statistics.median(cpu["batch"]), 3)
        result["sequential_cpu_ms_per_token"] = round(statistics.median(cpu["sequential"]), 3)
        result["speedup_cpu"] = round(result["sequential_cpu_ms_per_token"] / result["batch_cpu_ms_per_token"], 2)
    return result


def concurrency_gain(
    base_url: str, pid: int, folder: Path, size: str, tokens: int, rounds: int, streams: int
) -> dict[str, Any]:
    """``streams`` concurrent streams against one, with continuous batching (``-c<streams>``) and without."""
    clients = [httpx.Client(timeout=3600) for _ in range(streams)]
    runs = {
        "one": (f"{size}-nocache", 1),
        f"{streams}_one_at_a_time": (f"{size}-nocache", streams),
        "one_batching": (f"{size}-c{streams}", 1),
        f"{streams}_batched": (f"{size}-c{streams}", streams),
    }
    for model, _ in runs.values():  # load and warm up
        Stream(base_url, chat_body(folder, 4, model, {})).run(clients[0])
    samples: dict[str, list[dict[str, float]]] = {name: [] for name in runs}
    order = list(runs)
    for index in range(rounds):
        shift = index % len(order)
        for name in order[shift:] + order[:shift]:
            model, count = runs[name]
            before = cpu_seconds(pid)
            sample = concurrent(base_url, [chat_body(folder, tokens, model, {})] * count, clients[:count])
            after = cpu_seconds(pid)
            if before is not None and after is not None:
                sample["cpu_ms_per_token"] = (after - before) * 1000 / sample["tokens"]
            samples[name].append(sample)
    for client in clients:
        client.close()
    result: dict[str, Any] = {"tokens": tokens, "streams": streams}
    for name, runs_of in samples.items():
        result[name] = {
            "tokens_per_s": round(max(run["tokens_per_s"] for run in runs_of), 1),
            "ttft_ms": round(min(run["ttft_s"] for run in runs_of) * 1000, 1),
        }
        if all("cpu_ms_per_token" in run for run in runs_of):
            result[name]["cpu_ms_per_token"] = round(statistics.median(run["cpu_ms_per_token"] for run in runs_of), 3)
    batched, serial, one = result[f"{streams}_batched"], result[f"{streams}_one_at_a_time"], result["one"]
    result["batched_over_one_at_a_time"] = round(batched["tokens_per_s"] / serial["tokens_per_s"], 2)
    result["batched_over_one_stream"] = round(batched["tokens_per_s"] / one["tokens_per_s"], 2)
    if "cpu_ms_per_token" in batched and "cpu_ms_per_token" in serial:
        result["batched_over_one_at_a_time_cpu"] = round(serial["cpu_ms_per_token"] / batched["cpu_ms_per_token"], 2)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--tokens", type=int, default=256)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--streams", type=int, default=4, help="concurrent streams in the servers section")
    parser.add_argument("--sizes", default="tiny,small", help="models: tiny, small or both")
    parser.add_argument("--sections", default="decode,servers,cache,batch,concurrency")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    sections = set(args.sections.split(","))
    sizes = [size for size in args.sizes.split(",") if size]

    folders = {size: model_folder(size) for size in sizes}
    batching = heylook_supports_concurrency()
    entries = []
    for size, folder in folders.items():
        variants = [("", ""), ("-nocache", "prompt_cache_size = 0\n")]
        if batching:
            variants.append((f"-c{args.streams}", f"prompt_cache_size = 0\nconcurrency = {args.streams}\n"))
        for suffix, extra in variants:
            entries.append(
                f'[[models]]\nid = "{size}{suffix}"\nprovider = "mlx"\n[models.config]\nmodel_path = "{folder}"\n'
                f"{extra}"
            )
    work = Path(tempfile.mkdtemp(prefix="heylook-mlx-bench-"))  # (two benchmarks at once each keep their own)
    config = write_config(work, "max_loaded_models = 6\n\n" + "\n".join(entries))
    results: dict[str, Any] = {}
    with serve(config, env={"HEYLOOK_LOAD_PLUGINS": "mlx"}, timeout=120, cwd=work) as server:
        client = httpx.Client(base_url=server.base_url, timeout=600)
        for size, folder in folders.items() if "decode" in sections else ():
            tokens = args.tokens if size == "tiny" else max(64, args.tokens // 2)
            model = f"{size}-nocache"  # a cold prompt every round, like the raw run
            raw_decode(folder, 8)
            http_decode(client, model, folder, 8)  # load and warm up
            raw_best = http_best = 0.0
            raw_ttft = http_ttft = float("inf")
            for _ in range(args.rounds):
                rate, ttft = raw_decode(folder, tokens)
                raw_best, raw_ttft = max(raw_best, rate), min(raw_ttft, ttft)
                rate, ttft = http_decode(client, model, folder, tokens)
                http_best, http_ttft = max(http_best, rate), min(http_ttft, ttft)
            results[size] = {
                "parameters": parameter_count(folder),
                "tokens": tokens,
                "raw_tokens_per_s": round(raw_best, 1),
                "heylook_tokens_per_s": round(http_best, 1),
                "ratio": round(http_best / raw_best, 3),
                "added_ms_per_token": round(1000 / http_best - 1000 / raw_best, 4),
                "raw_ttft_ms": round(raw_ttft * 1000, 2),
                "heylook_ttft_ms": round(http_ttft * 1000, 2),
            }
            print(size, results[size], flush=True)
        for size, folder in folders.items() if "servers" in sections else ():
            tokens = args.tokens if size == "tiny" else max(64, args.tokens // 2)
            results[f"servers_{size}"] = side_by_side(
                (server.base_url, server.process.pid), folder, size, tokens, args.rounds, args.streams, batching
            )
            print("servers", size, results[f"servers_{size}"], flush=True)
        if "cache" in sections and "small" in folders:
            cached = min(ttft_turn_two(client, "small") for _ in range(3))
            cold = min(ttft_turn_two(client, "small-nocache") for _ in range(3))
            results["turn_two_ttft_ms"] = {"cache": round(cached * 1000, 1), "no_cache": round(cold * 1000, 1)}
            print("turn two ttft", results["turn_two_ttft_ms"], flush=True)
        for size, folder in folders.items() if "batch" in sections else ():
            rounds = args.rounds if size == "tiny" else max(2, args.rounds // 2)
            results[f"batch_{size}"] = batch_versus_sequential(
                httpx.Client(base_url=server.base_url, timeout=3600),
                server.process.pid,
                size,
                folder,
                args.batch,
                64,
                rounds,
            )
            print("batch", size, results[f"batch_{size}"], flush=True)
        for size, folder in folders.items() if "concurrency" in sections and batching else ():
            tokens = args.tokens if size == "tiny" else 64
            rounds = args.rounds if size == "tiny" else max(2, args.rounds // 2)
            results[f"concurrency_{size}"] = concurrency_gain(
                server.base_url, server.process.pid, folder, size, tokens, rounds, args.streams
            )
            print("concurrency", size, results[f"concurrency_{size}"], flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
