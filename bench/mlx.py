"""MLX backend: raw mlx-lm ``stream_generate`` vs heylook over HTTP, in one run, on the same generated models.

Measures, for a ~93k-parameter and a ~25M-parameter random llama (built once into the heylook cache dir):

* decode tokens/s streamed through ``heylookllm serve`` (SSE read with httpx) against ``stream_generate`` called
  directly in this process, with the same prompt, greedy sampling and the same logits processor (a bias that keeps
  the random model from ending early), and the time added per token;
* time to first token on the second turn of a conversation with the prompt cache on and off;
* ``/v1/batch/chat/completions`` throughput against the same requests sent one after another.

Runs alternate raw and heylook and keep the best of each, to damp noise from other work on the machine.
Usage: ``python bench/mlx.py [--rounds 5] [--tokens 256] [--json out.json]``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

# This file is named like the `mlx` package: run as a script, its folder must not shadow it.
sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != Path(__file__).resolve().parent]

import httpx  # noqa: E402
from platformdirs import user_cache_dir  # noqa: E402

from heylook_core.testing import serve, write_config  # noqa: E402
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
    body = {
        "model": model,
        "messages": [{"role": "user", "content": PROMPT}],
        "max_tokens": tokens,
        "temperature": 0,
        "enable_thinking": True,
        "logit_bias": {str(eos_of(folder)): -100},
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    start = time.perf_counter()
    first = last = 0.0
    pieces = 0
    usage: dict[str, Any] = {}
    with client.stream("POST", "/chat/completions", json=body) as response:
        response.raise_for_status()
        for line in response.iter_lines():
            if not line.startswith("data: {"):
                continue
            chunk = json.loads(line[6:])
            if chunk.get("usage"):
                usage = chunk["usage"]
            if chunk["choices"] and chunk["choices"][0]["delta"].get("content"):
                now = time.perf_counter()
                if pieces == 0:
                    first = now
                last = now
                pieces += 1
    generated = usage["completion_tokens"]
    return (generated - 1) / (last - first), first - start


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


def batch_throughput(client: httpx.Client, model: str, folder: Path, count: int, tokens: int) -> tuple[float, float]:
    """(tokens/s through the batch endpoint, tokens/s for the same requests one after another)."""
    requests = [
        {
            "messages": [{"role": "user", "content": f"{PROMPT} Part {index}."}],
            "max_tokens": tokens,
            "temperature": 0,
            "logit_bias": {str(eos_of(folder)): -100},
        }
        for index in range(count)
    ]
    start = time.perf_counter()
    data = client.post("/batch/chat/completions", json={"model": model, "requests": requests}).json()["data"]
    batch_seconds = time.perf_counter() - start
    batch_tokens = sum(item["usage"]["completion_tokens"] for item in data)
    start = time.perf_counter()
    sequential_tokens = 0
    for request in requests:
        result = client.post("/chat/completions", json={"model": model, **request}).json()
        sequential_tokens += result["usage"]["completion_tokens"]
    sequential_seconds = time.perf_counter() - start
    return batch_tokens / batch_seconds, sequential_tokens / sequential_seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--tokens", type=int, default=256)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    folders = {size: model_folder(size) for size in ("tiny", "small")}
    entries = []
    for size, folder in folders.items():
        for suffix, extra in (("", ""), ("-nocache", "prompt_cache_size = 0\n")):
            entries.append(
                f'[[models]]\nid = "{size}{suffix}"\nprovider = "mlx"\n[models.config]\nmodel_path = "{folder}"\n'
                f"{extra}"
            )
    work = cache_dir() / "server"
    work.mkdir(parents=True, exist_ok=True)
    config = write_config(work, "max_loaded_models = 4\n\n" + "\n".join(entries))
    results: dict[str, Any] = {}
    with serve(config, env={"HEYLOOK_LOAD_PLUGINS": "mlx"}, timeout=120) as server:
        client = httpx.Client(base_url=server.base_url, timeout=600)
        for size, folder in folders.items():
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
        cached = min(ttft_turn_two(client, "small") for _ in range(3))
        cold = min(ttft_turn_two(client, "small-nocache") for _ in range(3))
        results["turn_two_ttft_ms"] = {"cache": round(cached * 1000, 1), "no_cache": round(cold * 1000, 1)}
        print("turn two ttft", results["turn_two_ttft_ms"], flush=True)
        for size in ("tiny", "small"):
            batch, sequential = batch_throughput(client, size, folders[size], args.batch, 64)
            results[f"batch_{size}"] = {
                "requests": args.batch,
                "batch_tokens_per_s": round(batch, 1),
                "sequential_tokens_per_s": round(sequential, 1),
                "speedup": round(batch / sequential, 2),
            }
            print("batch", size, results[f"batch_{size}"], flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
