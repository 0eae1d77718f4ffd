"""``heylookllm llama-server install``: build llama-server from source for this host into the user cache, once.

The source is the pinned llama-cpp-python sdist from PyPI (``pip download``), checked against its sha256; its
vendored ``llama.cpp`` tree is built with CMake, statically linked, with no network access during the build (no web
UI download, no curl). The flag sets and the cache key come from :mod:`heylook_llama_server.ggml_build`: by default
``native-noamx`` (``-march=native`` without ggml's AMX kernels), and ``portable`` when that build dies in the smoke
test (the binary serves the default GGUF on a free loopback port and answers a short completion). ``$CMAKE_ARGS`` is
appended to heylook's CMake options and is part of the key.

Cache layout under ``<cache>/``: the sdist in ``downloads/`` (shared with the wheel build), the tree in
``llama-server/<version>/src``, then one entry per build key in ``llama-server/<version>/<key>/`` holding the CMake
build in ``build/`` (an interrupted build resumes), the result in ``bin/llama-server`` and ``build.json`` (or only
``unusable.json`` where the build crashed here); ``llama-server/<version>/current`` names the chosen entry.

This module needs only the standard library, so ``scripts/build-llama-server.sh`` can run it as
``python -m heylook_llama_server.install`` before any environment exists; the CLI command calls the same
:func:`install`.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from heylook_llama_server import ggml_build
from heylook_llama_server.binary import (
    BINARY_NAME,
    SOURCE_PACKAGE,
    SOURCE_SHA256,
    SOURCE_VERSION,
    build_root,
    cache_root,
    find_binary,
    select_build,
    smoke_binary,
)
from heylook_llama_server.ggml_build import FlagSet, Record

# heylook's options; the flag set's (GGML_NATIVE, C/C++ flags) and the user's $CMAKE_ARGS follow, in that order.
CMAKE_OPTIONS = [
    "-DCMAKE_BUILD_TYPE=Release",
    "-DBUILD_SHARED_LIBS=OFF",
    "-DLLAMA_BUILD_COMMON=ON",
    "-DLLAMA_BUILD_TOOLS=ON",
    "-DLLAMA_BUILD_SERVER=ON",
    "-DLLAMA_BUILD_TESTS=OFF",
    "-DLLAMA_BUILD_EXAMPLES=OFF",
    "-DLLAMA_BUILD_APP=OFF",
    "-DLLAMA_BUILD_UI=OFF",
    "-DLLAMA_USE_PREBUILT_UI=OFF",
    "-DLLAMA_OPENSSL=OFF",
]


class InstallError(Exception):
    """A build step failed; the message says which and what to do."""


def _say(text: str) -> None:
    sys.stdout.write(f"llama-server install: {text}\n")
    sys.stdout.flush()


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_tools() -> dict[str, str]:
    """The build tools found; raises :class:`InstallError` naming what is missing."""
    found = {}
    for tool, hint in (("cmake", "cmake (3.14 or newer)"), ("c++", "a C++17 compiler (g++ or clang++)")):
        path = shutil.which(tool) or (shutil.which("g++") if tool == "c++" else None)
        if not path:
            raise InstallError(f"{hint} is needed to build llama-server; on Debian/Ubuntu: apt-get install cmake g++")
        found[tool] = path
    ninja = shutil.which("ninja")
    if ninja:
        found["ninja"] = ninja
    return found


def fetch_source(downloads: Path) -> Path:
    """The pinned sdist, downloaded with pip into ``downloads`` unless it is there already (and checked)."""
    name = f"{SOURCE_PACKAGE.replace('-', '_')}-{SOURCE_VERSION}.tar.gz"
    target = downloads / name
    if target.is_file() and _sha256(target) == SOURCE_SHA256:
        _say(f"source {target} (cached)")
        return target
    downloads.mkdir(parents=True, exist_ok=True)
    _say(f"downloading {SOURCE_PACKAGE}=={SOURCE_VERSION} source from PyPI")
    with tempfile.TemporaryDirectory(dir=downloads) as tmp:
        command = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--no-binary",
            ":all:",
            "--dest",
            tmp,
            f"{SOURCE_PACKAGE}=={SOURCE_VERSION}",
        ]
        done = subprocess.run(command, check=False)
        fetched = Path(tmp) / name
        if done.returncode != 0 or not fetched.is_file():
            raise InstallError(
                f"'{' '.join(command)}' failed (exit code {done.returncode}); check network access to PyPI"
            )
        actual = _sha256(fetched)
        if actual != SOURCE_SHA256:
            raise InstallError(f"{name} has sha256 {actual}, expected {SOURCE_SHA256}")
        os.replace(fetched, target)
    return target


def extract_tree(sdist: Path, root: Path) -> Path:
    """Unpack the sdist's ``vendor/llama.cpp`` into ``root/src`` (once)."""
    source = root / "src"
    if (source / "CMakeLists.txt").is_file():
        _say(f"llama.cpp tree {source} (cached)")
        return source
    _say(f"unpacking llama.cpp from {sdist.name}")
    root.mkdir(parents=True, exist_ok=True)
    prefix = f"{SOURCE_PACKAGE.replace('-', '_')}-{SOURCE_VERSION}/vendor/llama.cpp/"
    with tempfile.TemporaryDirectory(dir=root) as tmp, tarfile.open(sdist) as archive:
        members = [m for m in archive.getmembers() if m.name.startswith(prefix) and (m.isfile() or m.isdir())]
        if not members:
            raise InstallError(f"{sdist} holds no {prefix} tree")
        for member in members:
            member.name = member.name[len(prefix) :]
        wanted = [m for m in members if m.name]
        if hasattr(tarfile, "data_filter"):  # the "data" filter where this Python has extraction filters
            archive.extractall(tmp, members=wanted, filter="data")  # noqa: S202
        else:
            archive.extractall(tmp, members=wanted)  # noqa: S202
        if source.exists():
            shutil.rmtree(source)
        os.replace(tmp, source)
        Path(tmp).mkdir()  # for TemporaryDirectory's cleanup
    return source


def _run(command: Sequence[str], log: Path, *, progress: bool) -> None:
    """Run a build step, appending its output to ``log`` and echoing progress lines."""
    with log.open("a", encoding="utf-8") as out:
        out.write(f"$ {' '.join(command)}\n")
        out.flush()
        process = subprocess.Popen(
            list(command), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace"
        )
        assert process.stdout is not None
        tail: list[str] = []
        for line in process.stdout:
            out.write(line)
            tail = (tail + [line.rstrip()])[-30:]
            if progress and (line.startswith("[") or "error" in line.lower()):
                sys.stdout.write("  " + line)
                sys.stdout.flush()
        code = process.wait()
    if code != 0:
        raise InstallError(f"'{' '.join(command)}' failed (exit code {code}); log: {log}\n" + "\n".join(tail))


def cmake_configure_args(flags: FlagSet) -> list[str]:
    return [*CMAKE_OPTIONS, *flags.cmake_args(), *ggml_build.user_cmake_args()]


def build(source: Path, root: Path, jobs: int, tools: dict[str, str], log: Path, flags: FlagSet) -> Path:
    build_dir = root / "build"
    configure = ["cmake", "-S", str(source), "-B", str(build_dir), *cmake_configure_args(flags)]
    cached_generator = _cached_generator(build_dir)
    if cached_generator:
        configure += ["-G", cached_generator]
    elif "ninja" in tools:
        configure += ["-G", "Ninja"]
    _say(f"configuring ({build_dir})")
    _run(configure, log, progress=False)
    _say(f"compiling llama-server with {jobs} job(s); progress below, full log in {log}")
    _run(["cmake", "--build", str(build_dir), "--target", "llama-server", "-j", str(jobs)], log, progress=True)
    produced = build_dir / "bin" / "llama-server"
    if not produced.is_file():
        raise InstallError(f"the build finished but {produced} is missing; log: {log}")
    return produced


def _cached_generator(build_dir: Path) -> str | None:
    cache = build_dir / "CMakeCache.txt"
    if not cache.is_file():
        return None
    for line in cache.read_text(encoding="utf-8", errors="replace").splitlines():
        if line.startswith("CMAKE_GENERATOR:INTERNAL="):
            return line.split("=", 1)[1]
    return None


def entry_for(name: str) -> tuple[FlagSet, dict[str, object], str, Path]:
    """The flag set called ``name``, its key facts, its cache key and its cache entry directory."""
    flags = ggml_build.flag_set(name)
    facts = ggml_build.key_facts("llama-server", SOURCE_VERSION, flags, {"cmake_options": CMAKE_OPTIONS})
    key = ggml_build.cache_key(facts)
    return flags, facts, key, build_root() / key


def install(*, force: bool = False, jobs: int | None = None, chain: Sequence[str] | None = None) -> Path:
    """Build llama-server for this host unless a usable binary is found; returns the binary's path.

    A binary from the config, ``$HEYLOOK_LLAMA_SERVER`` or ``PATH`` is used as it is (unless ``force``). heylook's
    own builds are smoke-tested before they are trusted, cached or just built; one killed by a signal is deleted
    and the next flag set of ``chain`` (default: native-noamx, then portable) is built instead.
    """
    if not force:
        found = find_binary()
        if found is not None and found.source != "heylook build":
            _say(f"already available: {found.path} (from {found.source}); pass --force to build anyway")
            return found.path
    started = time.monotonic()
    root = build_root()
    log_dir = cache_root() / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    model = ggml_build.smoke_model(cache_root())
    threads, _ = ggml_build.physical_cores()
    reasons = []
    for name in chain or ggml_build.default_chain():
        flags, facts, key, entry = entry_for(name)
        label = f"llama-server {SOURCE_VERSION} ({flags.name}, key {key})"
        marker = ggml_build.unusable(entry)
        if marker is not None and not force:
            _say(f"{label}: skipped, it crashed on {marker.get('host')} before: {marker.get('detail')}")
            reasons.append(f"{flags.name}: {marker.get('detail')}")
            continue
        target = entry / "bin" / BINARY_NAME
        if target.is_file() and not force:
            _say(f"{label}: cached {target}; smoke-testing it")
        else:
            (entry / ggml_build.UNUSABLE).unlink(missing_ok=True)
            tools = check_tools()
            log = log_dir / "llama-server-build.log"
            log.write_text(f"heylook llama-server build of {SOURCE_PACKAGE} {SOURCE_VERSION} ({flags.name})\n")
            sdist = fetch_source(cache_root() / "downloads")
            source = extract_tree(sdist, root)
            _say(f"{label}: building ({flags.note}); CMake options: {' '.join(cmake_configure_args(flags))}")
            produced = build(source, entry, jobs or os.cpu_count() or 2, tools, log, flags)
            target.parent.mkdir(parents=True, exist_ok=True)
            partial = target.with_name(target.name + ".partial")
            shutil.copy2(produced, partial)
            os.replace(partial, target)
        result = smoke_binary(target, model, threads)
        if result.crashed:
            _say(
                f"{label}: UNUSABLE on this CPU, the smoke test was {result.detail}; "
                "removed it from the cache, trying the next flag set"
            )
            ggml_build.mark_unusable(entry, flags.name, result)
            reasons.append(f"{flags.name}: {result.detail}")
            continue
        if not result.ok:
            raise InstallError(f"{label}: the smoke test failed ({result.detail}); output:\n{result.output[-3000:]}")
        Record(key, flags.name, facts, str(target), result.as_dict()).write(entry)
        select_build(key)
        features = ggml_build.cpu_features_used(result.system_info)
        _say(f"{label}: smoke test passed ({result.detail}); CPU features: {features}")
        _say(f"installed {target} in {time.monotonic() - started:.0f} s")
        return target
    raise InstallError(f"no build of llama-server runs on this host ({'; '.join(reasons)})")


def install_command(args: argparse.Namespace) -> int:
    try:
        install(force=args.force, jobs=args.jobs, chain=[args.flags] if getattr(args, "flags", None) else None)
    except (InstallError, RuntimeError, ValueError) as error:
        sys.stderr.write(f"llama-server install failed: {error}\n")
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m heylook_llama_server.install", description=__doc__)
    parser.add_argument("--force", action="store_true", help="build again even when a binary exists")
    parser.add_argument("--jobs", type=int, default=None, help="parallel compile jobs (default: CPU count)")
    parser.add_argument("--flags", choices=ggml_build.FLAG_SETS, default=None, help="one flag set, no fallback")
    return install_command(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
