"""The llama.cpp build cache: cache keys, flag sets, the smoke test, the fallback, and the thread default.

The cache logic runs for real against a stand-in package (``standin/``: it builds in a second and dies by SIGILL
when built with GGML_NATIVE=ON), so no second llama.cpp compile is needed; the smoke test of the real installed
build and ``heylookllm doctor`` run the real engine on the real GGUF.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import venv
from pathlib import Path

import pytest

from heylook_llamacpp import build, ggml_build
from heylook_llamacpp.config import LlamaCppConfig, default_threads

STANDIN = Path(__file__).parent / "standin"
CRASH = "import os, signal, json; print(json.dumps({'system_info': 'CPU : AVX2 = 1 | AMX_INT8 = 1 |'}), flush=True)"
CRASH += "; os.kill(os.getpid(), signal.SIGILL)"


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "cache"
    monkeypatch.setenv("HEYLOOK_CACHE", str(folder))
    monkeypatch.delenv("CMAKE_ARGS", raising=False)
    monkeypatch.delenv(ggml_build.ENV_FLAGS, raising=False)
    return folder


def standin_recipe() -> build.Recipe:
    def source(workdir: Path) -> Path:
        return Path(shutil.copytree(STANDIN, workdir / "standin-src"))

    return build.Recipe(
        distribution="standin-engine",
        version="1.0.0",
        version_file="standin/__init__.py",
        source=source,
        smoke_code="import standin; standin.run()",
        smoke_args=list,
    )


# -- the smoke test -----------------------------------------------------------------------------------------------


def test_smoke_test_detects_an_engine_killed_by_sigill() -> None:
    result = build.run_smoke([sys.executable, "-c", CRASH])
    assert not result.ok
    assert result.crashed
    assert "SIGILL" in result.detail
    assert "illegal instruction" in result.detail
    assert "AMX_INT8" in ggml_build.cpu_features_used(result.system_info)


def test_smoke_test_tells_an_error_from_a_crash() -> None:
    result = build.run_smoke([sys.executable, "-c", "raise SystemExit('no model here')"])
    assert not result.ok
    assert not result.crashed  # another flag set would not fix this: the build reports it instead of falling back
    assert "exit code 1" in result.detail
    assert "no model here" in result.detail


def test_describe_exit_names_signals() -> None:
    assert ggml_build.describe_exit(-signal.SIGSEGV).startswith("killed by SIGSEGV")
    assert ggml_build.describe_exit(3) == "exit code 3"
    assert ggml_build.died_by_signal(-signal.SIGILL)
    assert not ggml_build.died_by_signal(-signal.SIGTERM)  # stopped, not crashed
    assert not ggml_build.died_by_signal(0)


def test_the_installed_build_passes_the_smoke_test_on_the_real_model(gguf: Path) -> None:
    result = build.smoke_installed(model=gguf)
    assert result.ok, result.output
    assert result.text
    assert "AVX" in result.system_info or "NEON" in result.system_info or "CPU" in result.system_info
    assert "AMX_INT8 = 1" not in result.system_info  # heylook's builds never carry ggml's AMX kernels


# -- flag sets and keys -------------------------------------------------------------------------------------------


def test_cache_key_changes_with_everything_that_changes_the_binary(cache: Path, monkeypatch) -> None:
    native = ggml_build.flag_set("native-noamx")
    portable = ggml_build.flag_set("portable")
    base = ggml_build.key_facts("llama-cpp-python", "0.3.36", native)
    assert ggml_build.cache_key(base) == ggml_build.cache_key(
        ggml_build.key_facts("llama-cpp-python", "0.3.36", native)
    )
    assert base["cc"]["target"] and base["cc"]["version"]  # the compiler's id and target triple are in the key
    assert "native_target" in base  # what -march=native means on this CPU
    assert "native_target" not in ggml_build.key_facts("llama-cpp-python", "0.3.36", portable)
    keys = {
        ggml_build.cache_key(base),
        ggml_build.cache_key(ggml_build.key_facts("llama-cpp-python", "0.3.37", native)),
        ggml_build.cache_key(ggml_build.key_facts("llama-cpp-python", "0.3.36", portable)),
        ggml_build.cache_key(ggml_build.key_facts("llama-server", "0.3.36", native)),
    }
    monkeypatch.setenv("CMAKE_ARGS", "-DGGML_VULKAN=on")
    keys.add(ggml_build.cache_key(ggml_build.key_facts("llama-cpp-python", "0.3.36", native)))
    monkeypatch.setenv("CC", "gcc")
    keys.add(ggml_build.cache_key(ggml_build.key_facts("llama-cpp-python", "0.3.36", native)))
    assert len(keys) == 6


@pytest.mark.skipif(not ggml_build.is_x86(), reason="the AMX flags exist on x86-64 only")
def test_native_noamx_leaves_out_ggmls_amx_kernels_even_for_an_amx_cpu() -> None:
    flags = ggml_build.flag_set("native-noamx")
    assert flags.defines == ("-DGGML_NATIVE=ON",)
    assert set(flags.cflags) == set(ggml_build.NO_AMX_FLAGS)
    # ggml compiles its AMX kernels under __AMX_INT8__: a Sapphire Rapids target (AMX) with the flags, in either order
    cc, _ = ggml_build.compilers()
    for order in (["-march=sapphirerapids", *flags.cflags], [*flags.cflags, "-march=sapphirerapids"]):
        done = subprocess.run([cc, *order, "-dM", "-E", "-x", "c", os.devnull], capture_output=True, text=True)
        if done.returncode != 0:
            pytest.skip(f"{cc} does not know sapphirerapids")
        assert "__AMX_INT8__" not in done.stdout and "__AMX_TILE__" not in done.stdout
        assert "__AVX512F__" in done.stdout  # everything else -march names stays
    plain = subprocess.run([cc, "-march=sapphirerapids", "-dM", "-E", "-x", "c", os.devnull], capture_output=True)
    assert b"__AMX_INT8__" in plain.stdout


def test_portable_enables_only_what_the_cpu_lists() -> None:
    flags = ggml_build.flag_set("portable", frozenset({"sse4_2", "avx", "avx2", "fma"}))
    if not ggml_build.is_x86():
        assert flags.defines == ("-DGGML_NATIVE=OFF",)
        return
    assert "-DGGML_NATIVE=OFF" in flags.defines
    assert {"-DGGML_AVX2=ON", "-DGGML_FMA=ON", "-DGGML_F16C=OFF", "-DGGML_BMI2=OFF"} <= set(flags.defines)
    assert "-DGGML_AVX512=OFF" in flags.defines and "-DGGML_AMX_INT8=OFF" in flags.defines
    assert not flags.cflags


def test_forcing_one_flag_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ggml_build.ENV_FLAGS, "portable")
    assert ggml_build.default_chain() == ["portable"]
    monkeypatch.setenv(ggml_build.ENV_FLAGS, "fastest")
    with pytest.raises(ValueError, match="native-noamx"):
        ggml_build.default_chain()


# -- the cache, with the stand-in package ---------------------------------------------------------------------------


def test_a_crashing_build_is_reported_removed_and_replaced_by_the_portable_one(cache: Path, capsys) -> None:
    recipe = standin_recipe()
    chosen = build.ensure(recipe, cache)  # native first: the stand-in dies by SIGILL there
    said = capsys.readouterr().out
    first = ggml_build.default_chain()[0]
    assert f"({first}, key" in said and "UNUSABLE on this CPU" in said and "SIGILL" in said
    assert chosen.flags.name == "portable"
    assert chosen.built and chosen.smoke.ok
    crashed = [entry for entry in (cache / "standin-engine").iterdir() if (entry / ggml_build.UNUSABLE).is_file()]
    assert len(crashed) == 1
    assert not list(crashed[0].glob("*.whl")), "a crashing build must not stay in the cache"
    assert json.loads((crashed[0] / ggml_build.UNUSABLE).read_text())["flag_set"] == first
    assert [p.name for p in (cache / "wheels").iterdir()] == [chosen.wheel.name]
    assert "+portable." in chosen.wheel.name
    # the next run trusts neither: it skips the crashed key and smoke-tests the cached portable build, no rebuild
    again = build.ensure(recipe, cache)
    assert "skipped, it crashed" in capsys.readouterr().out
    assert again.wheel == chosen.wheel and not again.built


def test_changed_cmake_args_get_a_fresh_build_and_replace_the_installed_one(
    cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    recipe = standin_recipe()
    cpu = build.ensure(recipe, cache, chain=["portable"])
    assert cpu.built
    assert not build.ensure(recipe, cache, chain=["portable"]).built  # same key: the cached build
    monkeypatch.setenv("CMAKE_ARGS", "-DGGML_VULKAN=on")
    gpu = build.ensure(recipe, cache, chain=["portable"])
    assert gpu.built and gpu.key != cpu.key and gpu.wheel != cpu.wheel
    assert "-DGGML_VULKAN=on" in gpu.smoke.system_info  # the user's CMAKE_ARGS reached the build, after heylook's
    assert [p.name for p in (cache / "wheels").iterdir()] == [gpu.wheel.name]
    # an environment holding the CPU build gets the new one (pip alone keeps it: 1.0.0+a satisfies ==1.0.0)
    env = tmp_path / "venv"
    venv.create(env, with_pip=True)
    python = str(env / "bin" / "python")
    assert build.install_into(cpu.wheel, python, recipe.distribution)
    assert build.installed_version(recipe.distribution, python) == build.wheel_version(cpu.wheel)
    assert not build.install_into(cpu.wheel, python, recipe.distribution)  # already there: nothing to do
    assert build.install_into(gpu.wheel, python, recipe.distribution)
    assert build.installed_version(recipe.distribution, python) == build.wheel_version(gpu.wheel)


def test_build_wheel_never_uses_pips_cache(cache: Path) -> None:
    recipe = standin_recipe()
    flags = ggml_build.flag_set("portable")
    wheel = build.build_wheel(recipe, flags, "k1", cache / "e1", sys.executable)
    assert wheel.name.startswith("standin_engine-1.0.0+portable.k1-")
    log = (cache / "e1" / "build.log").read_text()
    assert "--no-cache-dir" in log.splitlines()[0]


# -- threads --------------------------------------------------------------------------------------------------------


def test_default_threads_are_the_physical_cores_and_the_config_overrides() -> None:
    cores, how = ggml_build.physical_cores()
    assert 1 <= cores <= (os.cpu_count() or 1)
    assert "physical core" in how or "CPU" in how
    threads, batch, why = default_threads(LlamaCppConfig(model_path="m.gguf"))
    assert (threads, batch) == (cores, cores)
    assert why.startswith("default")
    assert default_threads(LlamaCppConfig(model_path="m.gguf", n_threads=3))[:2] == (3, 3)
    assert default_threads(LlamaCppConfig(model_path="m.gguf", n_threads=1, n_threads_batch=4))[:2] == (1, 4)


@pytest.mark.skipif(not Path("/sys/devices/system/cpu/cpu0/topology/core_id").is_file(), reason="Linux topology")
def test_physical_cores_count_distinct_cores_not_smt_siblings() -> None:
    pairs = set()
    for cpu in os.sched_getaffinity(0):
        topology = Path(f"/sys/devices/system/cpu/cpu{cpu}/topology")
        pairs.add(((topology / "physical_package_id").read_text(), (topology / "core_id").read_text()))
    assert ggml_build.physical_cores()[0] == len(pairs)


# -- doctor ---------------------------------------------------------------------------------------------------------


def test_doctor_smoke_tests_the_build_and_reports_flags_features_and_threads(gguf: Path) -> None:
    done = subprocess.run(
        [str(Path(sys.executable).with_name("heylookllm")), "doctor"],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "HEYLOOK_LOAD_PLUGINS": "llamacpp"},
    )
    out = done.stdout
    assert "[  ok] provider llama_cpp" in out, out + done.stderr
    assert "flag set " in out
    assert "smoke test: passed" in out
    assert "CPU features used:" in out
    assert f"threads: {ggml_build.physical_cores()[0]} " in out


# -- an engine that dies in-process ---------------------------------------------------------------------------------


def test_an_in_process_engine_death_leaves_the_model_and_engine_in_the_log_and_for_doctor(cache: Path) -> None:
    code = (
        "import logging, os, signal; logging.basicConfig(level=logging.INFO)\n"
        "from heylook_llamacpp import engine_log\n"
        "engine_log.engine_loading('gemma-test', 'llama-cpp-python 0.3.36+x, flag set native')\n"
        "os.kill(os.getpid(), signal.SIGILL)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == -signal.SIGILL
    assert "model 'gemma-test' runs in-process on llama.cpp (llama-cpp-python 0.3.36+x" in done.stderr
    assert "Fatal Python error" in done.stderr  # faulthandler's stacks
    from heylook_llamacpp import engine_log

    lines = engine_log.dead_engines()
    assert len(lines) == 1 and "'gemma-test'" in lines[0] and "flag set native" in lines[0]
    assert engine_log.dead_engines() == []  # reported once


def test_a_clean_exit_leaves_no_note(cache: Path) -> None:
    code = "from heylook_llamacpp import engine_log; engine_log.engine_loading('m', 'b')"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
    from heylook_llamacpp import engine_log

    assert engine_log.dead_engines() == []
