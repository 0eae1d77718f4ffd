"""heylook's llama-server builds: the smoke test, the fallback from a crashing cached build, threads and doctor.

The real binary (built once by scripts/build-llama-server.sh) serves the real GGUF in the smoke test; the crashing
build is a stand-in executable that kills itself with SIGILL, put where a cached heylook build would be.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

from heylook_llama_server import binary as binaries
from heylook_llama_server import ggml_build, install
from heylook_llama_server.config import LlamaServerConfig

pytestmark = pytest.mark.slow

CRASHING = """#!{python}
import os, signal, sys
if "--version" in sys.argv:
    print("version: 1 (stand-in)")
    sys.exit(0)
print("system_info: n_threads = 1 | CPU : AVX2 = 1 | AMX_INT8 = 1 |", flush=True)
os.kill(os.getpid(), signal.SIGILL)
"""


def crashing_binary(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(CRASHING.format(python=sys.executable), encoding="utf-8")
    path.chmod(0o755)
    return path


def test_smoke_test_passes_for_the_real_binary_on_the_real_model(binary: Path, gemma: Path) -> None:
    result = binaries.smoke_binary(binary, gemma, threads=1)
    assert result.ok, result.output[-2000:]
    assert result.text
    assert "CPU" in result.system_info
    assert "AMX_INT8 = 1" not in result.system_info


def test_smoke_test_detects_a_binary_killed_by_sigill(tmp_path: Path, gemma: Path) -> None:
    result = binaries.smoke_binary(crashing_binary(tmp_path / "llama-server"), gemma, threads=1)
    assert not result.ok and result.crashed
    assert "SIGILL" in result.detail
    assert "AMX_INT8" in ggml_build.cpu_features_used(result.system_info)


def test_a_crashing_cached_build_is_removed_and_the_next_flag_set_is_used(
    binary: Path, gemma: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    monkeypatch.setenv("HEYLOOK_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("HEYLOOK_LLAMA_SERVER", raising=False)
    monkeypatch.delenv("CMAKE_ARGS", raising=False)
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    (tmp_path / "cache" / "models").mkdir(parents=True)
    (tmp_path / "cache" / "models" / ggml_build.SMOKE_MODEL_NAME).symlink_to(gemma)
    first, second = ggml_build.default_chain()
    _, _, bad_key, bad_entry = install.entry_for(first)
    _, _, good_key, good_entry = install.entry_for(second)
    crashing_binary(bad_entry / "bin" / binaries.BINARY_NAME)
    (good_entry / "bin").mkdir(parents=True)
    shutil.copy2(binary, good_entry / "bin" / binaries.BINARY_NAME)  # a good build for the fallback, not compiled

    chosen = install.install()
    said = capsys.readouterr().out
    assert f"({first}, key {bad_key}): UNUSABLE on this CPU" in said and "SIGILL" in said
    assert chosen == good_entry / "bin" / binaries.BINARY_NAME
    assert not (bad_entry / "bin").exists(), "a crashing build must not stay in the cache"
    assert (bad_entry / ggml_build.UNUSABLE).is_file()
    assert binaries.current_key() == good_key
    assert binaries.find_binary() == binaries.Found(chosen, "heylook build")
    record = ggml_build.Record.read(good_entry)
    assert record is not None and record.flag_set == second and record.smoke["ok"]
    # the next install skips the crashed key without running it again and trusts the smoke-tested one
    assert install.install() == chosen
    assert "skipped, it crashed" in capsys.readouterr().out


def test_cmake_args_are_appended_and_change_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CMAKE_ARGS", raising=False)
    flags, _, key, _ = install.entry_for("native-noamx")
    assert install.cmake_configure_args(flags)[-1] == flags.cmake_args()[-1]
    monkeypatch.setenv("CMAKE_ARGS", "-DGGML_VULKAN=on -DGGML_NATIVE=OFF")
    args = install.cmake_configure_args(flags)
    assert args[-2:] == ["-DGGML_VULKAN=on", "-DGGML_NATIVE=OFF"]  # after heylook's own: the user's win
    assert install.entry_for("native-noamx")[2] != key


def test_default_threads_are_the_physical_cores_for_generation_and_prompts(gemma: Path) -> None:
    cores, _ = ggml_build.physical_cores()
    args = LlamaServerConfig(model_path=str(gemma)).server_args()
    assert args[args.index("--threads") + 1] == str(cores)
    assert args[args.index("--threads-batch") + 1] == str(cores)
    args = LlamaServerConfig(model_path=str(gemma), n_threads=1).server_args()
    assert (args[args.index("--threads") + 1], args[args.index("--threads-batch") + 1]) == ("1", "1")
    args = LlamaServerConfig(model_path=str(gemma), n_threads=1, n_threads_batch=2).server_args()
    assert args[args.index("--threads-batch") + 1] == "2"


def test_doctor_line_reports_the_build_threads_and_the_smoke_test(binary: Path, gemma: Path) -> None:
    result = binaries.describe()
    assert result.ok, result.detail
    assert "smoke test: passed" in result.detail
    assert f"threads: {ggml_build.physical_cores()[0]} " in result.detail
    assert "CPU features used:" in result.detail
    assert "flag set " in result.detail or "not built by heylook" in result.detail
