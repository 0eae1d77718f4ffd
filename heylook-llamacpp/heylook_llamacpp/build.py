"""Build the llama-cpp-python wheel for this host, smoke-test it, keep it in heylook's cache (standard library only).

``python -m heylook_llamacpp.build [--install] [--flags NAME] [--force]`` (what ``scripts/build-llama-cpp-wheel.sh``
and ``make`` run). For each flag set of :func:`~heylook_llamacpp.ggml_build.default_chain` (native-noamx, then
portable):

1. the cache key is computed from everything that changes the binary (:func:`~heylook_llamacpp.ggml_build.key_facts`);
2. a cached wheel for that key is smoke-tested before it is trusted; without one, the sdist is built with pip's cache
   off (``--no-cache-dir``), its version given the local label ``+<flag set>.<key>`` (``0.3.36+native.noamx.3f2a...``)
   so an installed build of other flags is a different version that pip replaces;
3. the smoke test loads the default GGUF in a subprocess and generates a few tokens. Killed by a signal: the build
   is deleted (a marker records why), and the next flag set is tried.

The chosen wheel is the only one in ``<cache>/wheels`` (what ``PIP_FIND_LINKS`` points at); ``--install`` also
installs it into the running Python's environment (``pip install --no-deps``) when that holds another build.

Cache layout, under ``$HEYLOOK_CACHE`` (default ``~/.cache/heylook``)::

    downloads/llama_cpp_python-0.3.36.tar.gz     the sdist (sha256-checked), shared with the llama-server build
    llama-cpp-python/<key>/*.whl, build.json     one entry per build key; unusable.json instead where it crashed
    llama-cpp-python/current.json               the entry chosen last
    wheels/llama_cpp_python-0.3.36+....whl      a copy of the chosen wheel, alone
    models/gemma-3-270m-q4_k_m.gguf             the smoke test's model (the default model's file)
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from heylook_llamacpp import ggml_build
from heylook_llamacpp.ggml_build import FlagSet, Record, SmokeResult

logger = logging.getLogger("heylook_llamacpp.build")

VERSION = "0.3.36"
SDIST_SHA256 = "832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e"
RUNTIME_DEPS = ("numpy>=1.20.0", "typing-extensions>=4.5.0", "diskcache>=5.6.1", "jinja2>=2.11.3")

# Run with the unpacked wheel first on sys.path: prints llama.cpp's system info, then loads the GGUF and generates.
LLAMA_SMOKE = """\
import json, sys
import llama_cpp
print(json.dumps({"system_info": llama_cpp.llama_print_system_info().decode(errors="replace")}), flush=True)
threads = int(sys.argv[2])
llm = llama_cpp.Llama(model_path=sys.argv[1], n_ctx=256, n_threads=threads, n_threads_batch=threads, verbose=False)
out = llm(sys.argv[3], max_tokens=4, temperature=0.0)
print(json.dumps({"text": out["choices"][0]["text"], "tokens": out["usage"]["completion_tokens"]}), flush=True)
"""


class BuildError(Exception):
    """A build or smoke step failed in a way another flag set would not fix; the message says what to do."""


@dataclass(frozen=True)
class Recipe:
    """What to build: a Python distribution from a source tree whose version line is rewritten per build.

    ``source(workdir)`` returns an unpacked project directory; ``version_file`` (relative to it) holds
    ``__version__ = "..."``. ``smoke_code`` runs as ``python -c`` with the unpacked wheel first on ``sys.path`` and
    ``smoke_args()`` as its arguments; it prints JSON lines (``system_info``, ``text``) and exits 0 when it works.
    The real recipe is :func:`llama_cpp_recipe`; tests use a tiny stand-in package.
    """

    distribution: str
    version: str
    version_file: str
    source: Callable[[Path], Path]
    smoke_code: str
    smoke_args: Callable[[], list[str]]
    smoke_deps: tuple[str, ...] = ()
    smoke_imports: tuple[str, ...] = ()

    @property
    def wheel_prefix(self) -> str:
        return re.sub(r"[-_.]+", "_", self.distribution).lower()


@dataclass(frozen=True)
class Chosen:
    wheel: Path
    entry: Path
    flags: FlagSet
    key: str
    built: bool
    smoke: SmokeResult


def _say(text: str) -> None:
    sys.stdout.write(f"{text}\n")
    sys.stdout.flush()


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# -- the real recipe --------------------------------------------------------------------------------------------------


def fetch_sdist(cache: Path) -> Path:
    """The pinned llama-cpp-python sdist in ``<cache>/downloads`` (downloaded with pip once, sha256-checked)."""
    downloads = cache / "downloads"
    target = downloads / f"llama_cpp_python-{VERSION}.tar.gz"
    if target.is_file() and _sha256(target) == SDIST_SHA256:
        return target
    downloads.mkdir(parents=True, exist_ok=True)
    _say(f"llama-cpp-python {VERSION}: downloading the source from PyPI")
    with tempfile.TemporaryDirectory(dir=downloads) as tmp:
        command = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-binary", ":all:"]
        command += ["--no-cache-dir", "--dest", tmp, f"llama-cpp-python=={VERSION}"]
        done = subprocess.run(command, check=False)
        fetched = Path(tmp) / target.name
        if done.returncode != 0 or not fetched.is_file():
            raise BuildError(f"'{' '.join(command)}' failed (exit code {done.returncode}); check access to PyPI")
        if _sha256(fetched) != SDIST_SHA256:
            raise BuildError(f"{fetched.name} has an unexpected sha256 (expected {SDIST_SHA256})")
        os.replace(fetched, target)
    return target


def llama_cpp_recipe(cache: Path) -> Recipe:
    def source(workdir: Path) -> Path:
        sdist = fetch_sdist(cache)
        with tarfile.open(sdist) as archive:
            # our own pinned, hash-checked sdist; the "data" filter where this Python has extraction filters
            if hasattr(tarfile, "data_filter"):
                archive.extractall(workdir, filter="data")  # noqa: S202
            else:
                archive.extractall(workdir)  # noqa: S202
        return workdir / f"llama_cpp_python-{VERSION}"

    def smoke_args() -> list[str]:
        threads, _ = ggml_build.physical_cores()
        return [str(ggml_build.smoke_model(cache)), str(threads), ggml_build.SMOKE_PROMPT]

    return Recipe(
        distribution="llama-cpp-python",
        version=VERSION,
        version_file="llama_cpp/__init__.py",
        source=source,
        smoke_code=LLAMA_SMOKE,
        smoke_args=smoke_args,
        smoke_deps=RUNTIME_DEPS,
        smoke_imports=("numpy", "typing_extensions", "diskcache", "jinja2"),
    )


# -- building ---------------------------------------------------------------------------------------------------------


def local_version(version: str, flags: FlagSet, key: str) -> str:
    """``0.3.36+native.noamx.<key>``: a PEP 440 local label naming the build, so pip tells builds apart."""
    return f"{version}+{flags.name.replace('-', '.')}.{key}"


def build_env(flags: FlagSet) -> dict[str, str]:
    """The environment for pip: heylook's definitions first in ``CMAKE_ARGS``, the user's after (they win), and the
    extra compiler flags in ``CFLAGS``/``CXXFLAGS`` (CMake's initial CMAKE_C_FLAGS/CMAKE_CXX_FLAGS)."""
    env = dict(os.environ)
    env["CMAKE_ARGS"] = " ".join([*flags.defines, *ggml_build.user_cmake_args()])
    if flags.cflags:
        extra = " ".join(flags.cflags)
        env["CFLAGS"] = f"{env.get('CFLAGS', '')} {extra}".strip()
        env["CXXFLAGS"] = f"{env.get('CXXFLAGS', '')} {extra}".strip()
    return env


def build_wheel(recipe: Recipe, flags: FlagSet, key: str, entry: Path, python: str) -> Path:
    """Build the recipe's wheel into ``entry`` with pip's cache off; returns the wheel."""
    label = local_version(recipe.version, flags, key)
    entry.mkdir(parents=True, exist_ok=True)
    log = entry / "build.log"
    with tempfile.TemporaryDirectory(prefix="heylook-build-") as tmp:
        project = recipe.source(Path(tmp))
        version_file = project / recipe.version_file
        text = version_file.read_text(encoding="utf-8")
        patched, count = re.subn(r'^__version__\s*=\s*"[^"]*"', f'__version__ = "{label}"', text, flags=re.M)
        if count != 1:
            raise BuildError(f"{version_file} has no single __version__ line to label")
        version_file.write_text(patched, encoding="utf-8")
        out = Path(tmp) / "wheelhouse"
        command = [python, "-m", "pip", "wheel", "--no-deps", "--no-cache-dir", "-v", "-w", str(out), str(project)]
        env = build_env(flags)
        _say(f"{recipe.distribution} {label}: building ({flags.name}: {flags.note}); full log: {log}")
        _say(f"  CMAKE_ARGS='{env['CMAKE_ARGS']}'" + (f" CFLAGS+='{' '.join(flags.cflags)}'" if flags.cflags else ""))
        started = time.monotonic()
        code = _run_logged(command, env, log)
        wheels = sorted(out.glob(f"{recipe.wheel_prefix}-*.whl"))
        if code != 0 or not wheels:
            tail = log.read_text(encoding="utf-8", errors="replace").splitlines()[-30:]
            raise BuildError(f"the build failed ({ggml_build.describe_exit(code)}); log: {log}\n" + "\n".join(tail))
        target = entry / wheels[0].name
        shutil.move(str(wheels[0]), target)
    _say(f"{recipe.distribution} {label}: built {target.name} in {time.monotonic() - started:.0f} s")
    return target


PROGRESS = re.compile(r"^\s*\[\d+/\d+\]")


def _run_logged(command: Sequence[str], env: dict[str, str], log: Path) -> int:
    """Run at low priority, everything into ``log``; echo ninja's progress lines (shortened) and a heartbeat."""
    started = time.monotonic()
    last = started
    nice = ["nice", "-n", "10"] if shutil.which("nice") else []
    with log.open("w", encoding="utf-8") as out:
        out.write(f"$ {' '.join(command)}\n")
        out.flush()
        with subprocess.Popen(
            [*nice, *command], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace", env=env
        ) as process:
            assert process.stdout is not None
            for line in process.stdout:
                out.write(line)
                if PROGRESS.match(line):
                    step = line.split()[0]
                    name = line.rstrip().rsplit("/", 1)[-1][:60]
                    _say(f"  {step} {name}")
                    last = time.monotonic()
                elif time.monotonic() - last > 20:
                    _say(f"  ... still building ({time.monotonic() - started:.0f} s)")
                    last = time.monotonic()
            return process.wait()


# -- the smoke test ---------------------------------------------------------------------------------------------------


def _smoke_site(recipe: Recipe, cache: Path, python: str) -> str | None:
    """A directory with the recipe's runtime deps when ``python`` lacks them (filled once), else ``None``."""
    if not recipe.smoke_imports:
        return None
    probe = subprocess.run([python, "-c", "import " + ", ".join(recipe.smoke_imports)], capture_output=True)
    if probe.returncode == 0:
        return None
    tag = subprocess.run(
        [python, "-c", "import sys; print(sys.implementation.cache_tag)"], capture_output=True, text=True, check=False
    ).stdout.strip()
    site = cache / recipe.distribution / f"smoke-deps-{tag or 'python'}"
    if not (site / ".complete").is_file():
        command = [python, "-m", "pip", "install", "-q", "--target", str(site), *recipe.smoke_deps]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise BuildError(f"'{' '.join(command)}' failed; check access to PyPI:\n{done.stdout}{done.stderr}")
        (site / ".complete").write_text("")
    return str(site)


def run_smoke(command: list[str], env: dict[str, str] | None = None, timeout: float = 300.0) -> SmokeResult:
    """Run a smoke command and classify it (shared by the wheel, an installed llama_cpp and doctor)."""
    try:
        done = subprocess.run(command, capture_output=True, text=True, errors="replace", env=env, timeout=timeout)
    except subprocess.TimeoutExpired as error:
        output = (error.stdout or "") if isinstance(error.stdout, str) else ""
        return SmokeResult(False, False, f"no answer within {timeout:.0f} s", output)
    output = done.stdout + done.stderr
    facts: dict[str, str] = {}
    for line in done.stdout.splitlines():
        if line.startswith("{"):
            try:
                facts.update(json.loads(line))
            except ValueError:
                pass
    system_info = str(facts.get("system_info", ""))
    if done.returncode == 0 and "text" in facts:
        return SmokeResult(True, False, f"generated {facts['text']!r}", output, system_info, str(facts["text"]))
    crashed = ggml_build.died_by_signal(done.returncode)
    last = next((line for line in reversed(output.splitlines()) if line.strip()), "no output")
    detail = ggml_build.describe_exit(done.returncode) + ("" if crashed else f": {last.strip()[:300]}")
    return SmokeResult(False, crashed, detail, output, system_info)


def smoke_wheel(recipe: Recipe, wheel: Path, cache: Path, python: str) -> SmokeResult:
    """Unpack ``wheel`` into a temporary directory and run the recipe's smoke code against it in a subprocess."""
    with tempfile.TemporaryDirectory(prefix="heylook-smoke-") as tmp:
        with zipfile.ZipFile(wheel) as archive:
            archive.extractall(tmp)
        site = _smoke_site(recipe, cache, python)
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (tmp, site, env.get("PYTHONPATH")) if p)
        env["PYTHONNOUSERSITE"] = "1"
        return run_smoke([python, "-c", recipe.smoke_code, *recipe.smoke_args()], env=env)


# -- choosing a build -------------------------------------------------------------------------------------------------


def root_of(cache: Path, recipe: Recipe) -> Path:
    return cache / recipe.distribution


def ensure(
    recipe: Recipe,
    cache: Path,
    *,
    python: str | None = None,
    chain: Sequence[str] | None = None,
    force: bool = False,
) -> Chosen:
    """A wheel that passed the smoke test on this host, built if needed; see the module docstring."""
    python = python or sys.executable
    names = list(chain) if chain else ggml_build.default_chain()
    root = root_of(cache, recipe)
    reasons = []
    for name in names:
        flags = ggml_build.flag_set(name)
        facts = ggml_build.key_facts(recipe.distribution, recipe.version, flags)
        key = ggml_build.cache_key(facts)
        entry = root / key
        label = f"{recipe.distribution} {recipe.version} ({flags.name}, key {key})"
        marker = ggml_build.unusable(entry)
        if marker is not None and not force:
            _say(f"{label}: skipped, it crashed on {marker.get('host')} before: {marker.get('detail')}")
            reasons.append(f"{flags.name}: {marker.get('detail')}")
            continue
        cached = sorted(entry.glob(f"{recipe.wheel_prefix}-*.whl"))
        built = False
        if cached and not force:
            wheel = cached[0]
            _say(f"{label}: cached {wheel}; smoke-testing it")
        else:
            for old in cached:
                old.unlink()
            (entry / ggml_build.UNUSABLE).unlink(missing_ok=True)
            wheel = build_wheel(recipe, flags, key, entry, python)
            built = True
        result = smoke_wheel(recipe, wheel, cache, python)
        if result.crashed:
            _say(
                f"{label}: UNUSABLE on this CPU, the smoke test was {result.detail}; "
                "removed it from the cache, trying the next flag set"
            )
            ggml_build.mark_unusable(entry, flags.name, result)
            reasons.append(f"{flags.name}: {result.detail}")
            continue
        if not result.ok:
            raise BuildError(f"{label}: the smoke test failed ({result.detail}); output:\n{result.output[-3000:]}")
        _say(
            f"{label}: smoke test passed ({result.detail}); CPU features: "
            f"{ggml_build.cpu_features_used(result.system_info)}"
        )
        Record(key, flags.name, facts, wheel.name, result.as_dict()).write(entry)
        select(cache, recipe, wheel, key, flags)
        return Chosen(wheel, entry, flags, key, built, result)
    raise BuildError(
        f"no build of {recipe.distribution} {recipe.version} runs on this host ({'; '.join(reasons)}); "
        "see the logs in " + str(root)
    )


def select(cache: Path, recipe: Recipe, wheel: Path, key: str, flags: FlagSet) -> None:
    """Make ``wheel`` the only build of the recipe in ``<cache>/wheels`` and record it in ``current.json``."""
    wheels = cache / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    for other in wheels.glob(f"{recipe.wheel_prefix}-*.whl"):
        if other.name != wheel.name:
            other.unlink()
    target = wheels / wheel.name
    if not target.is_file() or target.stat().st_size != wheel.stat().st_size:
        partial = wheels / (wheel.name + ".partial")
        shutil.copyfile(wheel, partial)
        os.replace(partial, target)
    current = {"key": key, "flag_set": flags.name, "wheel": str(wheel)}
    (root_of(cache, recipe) / "current.json").write_text(json.dumps(current, indent=2) + "\n", encoding="utf-8")


def installed_version(distribution: str, python: str) -> str | None:
    code = f"import importlib.metadata as m; print(m.version({distribution!r}))"
    done = subprocess.run([python, "-c", code], capture_output=True, text=True, check=False)
    return done.stdout.strip() if done.returncode == 0 else None


def wheel_version(wheel: Path) -> str:
    return wheel.name.split("-")[1]


def install_into(wheel: Path, python: str, distribution: str) -> bool:
    """Install ``wheel`` (without dependencies) into ``python``'s environment unless that build is there already."""
    have = installed_version(distribution, python)
    want = wheel_version(wheel)
    if have == want:
        _say(f"{distribution} {want}: already installed in {python}")
        return False
    _say(f"{distribution}: installing {want} into {python}" + (f" (replacing {have})" if have else ""))
    command = [python, "-m", "pip", "install", "-q", "--no-deps", "--force-reinstall", str(wheel)]
    if subprocess.run(command, check=False).returncode != 0:
        raise BuildError(f"'{' '.join(command)}' failed")
    return True


# -- what doctor and the provider ask ---------------------------------------------------------------------------------


def record_of(version: str, cache: Path | None = None) -> Record | None:
    """The cache entry's record of an installed llama-cpp-python version carrying heylook's label, else ``None``."""
    _, _, label = version.partition("+")
    key = label.rsplit(".", 1)[-1] if label else ""
    if not key:
        return None
    return Record.read((cache or ggml_build.cache_root()) / "llama-cpp-python" / key)


def build_description() -> str:
    """``llama-cpp-python 0.3.36+native.noamx.<key>, flag set native-noamx``: the installed build, for logs."""
    import importlib.metadata

    try:
        version = importlib.metadata.version("llama-cpp-python")
    except importlib.metadata.PackageNotFoundError:
        return "llama-cpp-python not installed"
    record = record_of(version)
    flags = f"flag set {record.flag_set}" if record else "not a heylook build: flags unknown"
    return f"llama-cpp-python {version}, {flags}"


def smoke_installed(
    model: Path | None = None, python: str | None = None, cache: Path | None = None, timeout: float = 300.0
) -> SmokeResult:
    """The smoke test against the llama_cpp installed in ``python``'s environment (``heylookllm doctor``)."""
    model = model or ggml_build.smoke_model(cache or ggml_build.cache_root())
    threads, _ = ggml_build.physical_cores()
    env = dict(os.environ, PYTHONNOUSERSITE="1")
    return run_smoke(
        [python or sys.executable, "-c", LLAMA_SMOKE, str(model), str(threads), ggml_build.SMOKE_PROMPT],
        env=env,
        timeout=timeout,
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m heylook_llamacpp.build", description=__doc__.split("\n")[0])
    parser.add_argument("--install", action="store_true", help="install the chosen wheel into this Python")
    parser.add_argument("--sync", action="store_true", help="only install the chosen wheel (no build, no smoke test)")
    parser.add_argument("--force", action="store_true", help="rebuild even when a cached build passes")
    parser.add_argument(
        "--flags",
        choices=ggml_build.FLAG_SETS,
        default=None,
        help=f"one flag set, no fallback (or ${ggml_build.ENV_FLAGS})",
    )
    parser.add_argument("--python", default=sys.executable, help="the Python that builds and smoke-tests")
    args = parser.parse_args(argv)
    cache = ggml_build.cache_root()
    try:
        if args.sync:
            current = cache / "llama-cpp-python" / "current.json"
            if not current.is_file():
                _say(f"llama-cpp-python: no heylook build chosen yet ({current}); run scripts/build-llama-cpp-wheel.sh")
                return 0
            install_into(
                Path(json.loads(current.read_text(encoding="utf-8"))["wheel"]), args.python, "llama-cpp-python"
            )
            return 0
        chosen = ensure(
            llama_cpp_recipe(cache),
            cache,
            python=args.python,
            chain=[args.flags] if args.flags else None,
            force=args.force,
        )
        _say(f"llama-cpp-python: using {chosen.wheel} ({chosen.flags.name})")
        if args.install:
            install_into(chosen.wheel, args.python, "llama-cpp-python")
    except (BuildError, RuntimeError, ValueError, OSError) as error:
        sys.stderr.write(f"llama-cpp-python build failed: {error}\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
