"""``heylookllm import``: GGUF files written with the ``gguf`` package, MLX folders, a Hugging Face cache laid out as
``huggingface_hub`` lays it out, merge keeping comments, no overwrite without --force, and --interactive in a pty."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Literal

import pytest
from pydantic import Field

gguf = pytest.importorskip("gguf")
tomlkit = pytest.importorskip("tomlkit")
pytest.importorskip("huggingface_hub")

from heylook_core import (  # noqa: E402
    Capability,
    ProviderConfig,
    ProviderSpec,
    hookimpl,
    importer,  # noqa: E402
)
from heylook_core.config import load_settings  # noqa: E402
from heylook_core.errors import ConfigError  # noqa: E402
from heylook_core.plugins import PluginHost  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


class FakeLlamaConfig(ProviderConfig):
    """The keys of heylook_llamacpp's schema the importer writes (the real one lives in tests/llamacpp)."""

    model_path: str
    n_ctx: int = 4096
    n_gpu_layers: int = Field(default=0, ge=-1)
    n_batch: int = 512
    flash_attn: bool = False
    use_mmap: bool = True
    mmproj: str | None = None


class FakeMLXConfig(ProviderConfig):
    model_path: str
    vision: bool = False
    max_kv_size: int | None = None
    kv_bits: int | None = None
    prompt_cache_size: int = 4
    prefill_step_size: int = 2048
    max_tokens_default: int = 512


class FakeWhisperConfig(ProviderConfig):
    model_path: str
    compute_type: str = "default"
    beam_size: int = 5
    device: Literal["auto", "cpu", "cuda"] = "auto"


def _never() -> Any:
    raise AssertionError("not loaded in these tests")


class FakeBackends:
    """Registers providers under the real names, so the importer writes what the real backends would read."""

    def __init__(self, *names: str) -> None:
        self.names = names

    @hookimpl
    def register_providers(self, register: Any) -> None:
        schemas = {"llama_cpp": FakeLlamaConfig, "mlx": FakeMLXConfig, "faster_whisper": FakeWhisperConfig}
        for name in self.names:
            register(ProviderSpec(name, _never, config_schema=schemas[name], capabilities=frozenset({Capability.CHAT})))


def host_with(*names: str) -> PluginHost:
    os.environ["HEYLOOK_LOAD_PLUGINS"] = "echo"
    return PluginHost(extra_plugins=[("fake-backends", FakeBackends(*names))]).load()


def run_import(host: PluginHost, *argv: str) -> int:
    parser = argparse.ArgumentParser()
    importer.register(parser.add_subparsers())
    args = parser.parse_args(["import", *argv])
    args.plugin_host = host
    return args.handler(args)


def write_gguf(
    path: Path, *, arch: str = "llama", context: int = 2048, template: bool = True, file_type: int = 15
) -> Path:
    import numpy as np

    path.parent.mkdir(parents=True, exist_ok=True)
    writer = gguf.GGUFWriter(str(path), arch)
    writer.add_name(path.stem)
    writer.add_context_length(context)
    writer.add_file_type(file_type)
    if template:
        writer.add_chat_template("{% for m in messages %}{{ m.content }}{% endfor %}")
    writer.add_tensor("token_embd.weight", np.zeros((64, 16), dtype=np.float32))
    writer.add_tensor("output.weight", np.zeros((64, 16), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def write_mlx(folder: Path, *, vision: bool = False) -> Path:
    import numpy as np
    from safetensors.numpy import save_file

    folder.mkdir(parents=True, exist_ok=True)
    config: dict[str, Any] = {"model_type": "qwen2", "max_position_embeddings": 32768, "quantization": {"bits": 4}}
    if vision:
        config["vision_config"] = {"image_size": 224}
    (folder / "config.json").write_text(json.dumps(config))
    save_file({"w": np.zeros((2, 2), dtype=np.float32)}, str(folder / "model.safetensors"))
    (folder / "tokenizer.json").write_text("{}")
    return folder


def test_gguf_metadata(tmp_path: Path) -> None:
    info = importer.gguf_info(write_gguf(tmp_path / "tiny-llama-Q4_K_M.gguf"))
    assert info["architecture"] == "llama"
    assert info["quantization"] == "Q4_K_M"
    assert info["context_length"] == 2048
    assert info["chat_template"] is True
    assert info["parameter_count"] == 2 * 64 * 16
    assert info["parameters"] == "2K"
    assert importer.gguf_info(write_gguf(tmp_path / "plain.gguf", template=False))["chat_template"] is False


def test_scan_finds_each_kind_and_pairs_mmproj(tmp_path: Path) -> None:
    write_gguf(tmp_path / "vlm" / "tiny-vl-Q8_0.gguf", file_type=7)
    write_gguf(tmp_path / "vlm" / "mmproj-tiny-vl-f16.gguf", arch="clip", file_type=1)
    write_gguf(tmp_path / "big" / "big-00001-of-00002.gguf")
    write_gguf(tmp_path / "big" / "big-00002-of-00002.gguf")
    write_mlx(tmp_path / "mlx" / "qwen-vl-4bit", vision=True)
    whisper = tmp_path / "whisper" / "faster-whisper-tiny"
    whisper.mkdir(parents=True)
    for name in ("model.bin", "config.json", "vocabulary.txt"):
        (whisper / name).write_text("x")
    coreml = tmp_path / "coreml" / "whisper-coreml"
    for name in ("encoder.mlpackage", "decoder.mlmodelc"):
        (coreml / name).mkdir(parents=True)
    (coreml / "tokenizer.json").write_text("{}")
    (tmp_path / "notes.txt").write_text("not a model")

    found = {item.name: item for item in importer.scan_folder(tmp_path)}
    assert set(found) == {"tiny-vl-Q8_0", "big", "qwen-vl-4bit", "faster-whisper-tiny", "whisper-coreml"}
    assert found["tiny-vl-Q8_0"].mmproj == tmp_path / "vlm" / "mmproj-tiny-vl-f16.gguf"
    assert found["tiny-vl-Q8_0"].info["quantization"] == "Q8_0"
    assert found["big"].path.name == "big-00001-of-00002.gguf"
    assert found["qwen-vl-4bit"].kind == "mlx" and found["qwen-vl-4bit"].vision
    assert found["qwen-vl-4bit"].info == {"architecture": "qwen2", "context_length": 32768, "quantization": "4bit"}
    assert found["faster-whisper-tiny"].kind == "ctranslate2"
    assert found["whisper-coreml"].kind == "coreml_stt"


def test_import_writes_a_file_that_loads(tmp_path: Path) -> None:
    models = tmp_path / "models"
    write_gguf(models / "Tiny-Llama-Q4_K_M.gguf", context=2048)
    write_gguf(models / "sub" / "tiny-llama-q4_k_m.gguf")  # the same id again: made unique
    write_mlx(models / "mlx-text")
    out = tmp_path / "out" / "models.toml"
    host = host_with("llama_cpp", "mlx")
    assert run_import(host, "--folder", str(models), "--output", str(out), "--profile", "quality") == 0
    settings = load_settings(host.providers, host.offered_models, config_path=out)
    by_id = {m.id: m for m in settings.models}
    assert set(by_id) == {"tiny-llama-q4_k_m", "tiny-llama-q4_k_m-2", "mlx-text"}
    first = by_id["tiny-llama-q4_k_m"]
    assert first.entry.provider == "llama_cpp"
    assert first.config.n_ctx == 2048  # the quality profile's 32768, capped at the trained length
    assert first.config.n_gpu_layers == -1
    assert first.entry.description.startswith("llama 2K Q4_K_M")
    assert by_id["mlx-text"].config.max_tokens_default == 2048
    # ids are stable: a second run with --force writes the same ids
    assert run_import(host, "--folder", str(models), "--output", str(out), "--force") == 0
    assert {m["id"] for m in tomlkit.parse(out.read_text())["models"]} == set(by_id)
    assert (tmp_path / "out" / "models.toml.bak").is_file()


def test_profiles_set_only_keys_the_backend_has(tmp_path: Path) -> None:
    write_mlx(tmp_path / "m" / "small")
    host = host_with("mlx")
    for profile in importer.PROFILES:
        out = tmp_path / f"{profile}.toml"
        assert run_import(host, "--folder", str(tmp_path / "m"), "--output", str(out), "--profile", profile) == 0
        config = dict(tomlkit.parse(out.read_text())["models"][0]["config"])
        assert set(config) <= set(FakeMLXConfig.model_fields)
    low = dict(tomlkit.parse((tmp_path / "low-memory.toml").read_text())["models"][0]["config"])
    assert low["kv_bits"] == 8 and low["max_kv_size"] == 4096


def test_missing_provider_is_listed_with_its_install(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_gguf(tmp_path / "m" / "a.gguf")
    write_mlx(tmp_path / "m" / "mlx-model")
    out = tmp_path / "models.toml"
    assert run_import(host_with("mlx"), "--folder", str(tmp_path / "m"), "--output", str(out)) == 0
    text = capsys.readouterr().out
    assert "pip install heylook-llamacpp" in text
    written = tomlkit.parse(out.read_text())["models"]
    assert [m["id"] for m in written] == ["mlx-model"]


def test_an_existing_file_is_kept_without_merge_or_force(tmp_path: Path) -> None:
    write_gguf(tmp_path / "m" / "a.gguf")
    out = tmp_path / "models.toml"
    out.write_text("# mine\n")
    with pytest.raises(ConfigError, match="--merge"):
        run_import(host_with("llama_cpp"), "--folder", str(tmp_path / "m"), "--output", str(out))
    assert out.read_text() == "# mine\n"


def test_merge_keeps_comments_order_and_entries(tmp_path: Path) -> None:
    write_gguf(tmp_path / "m" / "new-model.gguf")
    write_gguf(tmp_path / "m" / "known.gguf")
    out = tmp_path / "models.toml"
    hand = (
        "# my hand-edited config\n"
        'default_model = "mine"\n\n'
        "[[models]]\n"
        'id = "mine"  # the echo model\n'
        'provider = "echo"\n\n'
        "[[models]]\n"
        'id = "known"\n'
        'provider = "llama_cpp"\n'
        "[models.config]\n"
        f'model_path = "{tmp_path / "m" / "known.gguf"}"\n'
        "n_ctx = 1234  # keep\n"
    )
    out.write_text(hand)
    host = host_with("llama_cpp")
    assert run_import(host, "--folder", str(tmp_path / "m"), "--output", str(out), "--merge") == 0
    text = out.read_text()
    assert text.startswith(hand)  # everything that was there, byte for byte, first
    assert [m["id"] for m in tomlkit.parse(text)["models"]] == ["mine", "known", "new-model"]
    assert (tmp_path / "models.toml.bak").read_text() == hand
    load_settings(host.providers, host.offered_models, config_path=out)


def test_dry_run_writes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_gguf(tmp_path / "m" / "a.gguf")
    out = tmp_path / "models.toml"
    assert run_import(host_with("llama_cpp"), "--folder", str(tmp_path / "m"), "--output", str(out), "--dry-run") == 0
    assert not out.exists()
    assert '[[models]]\nid = "a"' in capsys.readouterr().out


def _blob(cache: Path, repo: str, commit: str, files: dict[str, bytes | Path], when: float) -> None:
    """Lay out one snapshot as huggingface_hub does: blobs by hash, snapshot symlinks into them, refs/main."""
    import hashlib

    base = cache / ("models--" + repo.replace("/", "--"))
    (base / "blobs").mkdir(parents=True, exist_ok=True)
    (base / "refs").mkdir(exist_ok=True)
    snapshot = base / "snapshots" / commit
    snapshot.mkdir(parents=True)
    for name, content in files.items():
        data = content.read_bytes() if isinstance(content, Path) else content
        digest = hashlib.sha256(data).hexdigest()
        blob = base / "blobs" / digest
        blob.write_bytes(data)
        link = snapshot / name
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
        os.utime(blob, (when, when))
        os.utime(link, (when, when), follow_symlinks=False)
    (base / "refs" / "main").write_text(commit)


def test_hf_cache_one_entry_per_repo_newest_snapshot(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = tmp_path / "hub"
    q4 = write_gguf(tmp_path / "src" / "q4.gguf", file_type=15)
    q8 = write_gguf(tmp_path / "src" / "q8.gguf", file_type=7)
    old, new = "a" * 40, "b" * 40
    _blob(cache, "org/Tiny-GGUF", old, {"tiny-Q8_0.gguf": q8}, 1_000_000)
    _blob(cache, "org/Tiny-GGUF", new, {"tiny-Q4_K_M.gguf": q4, "tiny-Q8_0.gguf": q8}, 2_000_000)
    mlx = write_mlx(tmp_path / "src" / "mlx")
    _blob(
        cache,
        "mlx-community/Qwen-0.5B-4bit",
        "c" * 40,
        {"config.json": mlx / "config.json", "model.safetensors": mlx / "model.safetensors"},
        1_500_000,
    )
    _blob(cache, "org/readme-only", "d" * 40, {"README.md": b"hello"}, 1_000_000)
    found = importer.scan_hf_cache(cache)
    by_repo = {item.info["repo"]: item for item in found}
    assert set(by_repo) == {"org/Tiny-GGUF", "mlx-community/Qwen-0.5B-4bit"}
    tiny = by_repo["org/Tiny-GGUF"]
    assert tiny.info["revision"] == new
    assert tiny.path.name == "tiny-Q4_K_M.gguf" and tiny.path.parent.name == new
    assert tiny.name == "Tiny-Q4_K_M"

    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    out = tmp_path / "models.toml"
    host = host_with("llama_cpp", "mlx")
    assert run_import(host, "--hf-cache", "--output", str(out)) == 0
    ids = [m["id"] for m in tomlkit.parse(out.read_text())["models"]]
    assert ids == ["qwen-0.5b-4bit", "tiny-q4_k_m"]


INTERACTIVE = """
import sys
sys.path.insert(0, {tests!r})
from test_import import host_with, run_import
sys.exit(run_import(host_with("llama_cpp"), "--folder", {folder!r}, "--output", {out!r}, "--interactive"))
"""


def test_interactive_in_a_pty(tmp_path: Path) -> None:
    pexpect = pytest.importorskip("pexpect")
    write_gguf(tmp_path / "m" / "first.gguf")
    write_gguf(tmp_path / "m" / "second.gguf")
    out = tmp_path / "models.toml"
    script = INTERACTIVE.format(tests=str(Path(__file__).parent), folder=str(tmp_path / "m"), out=str(out))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    child = pexpect.spawn(sys.executable, ["-c", script], env=env, encoding="utf-8", timeout=60)
    child.expect(r"first\.gguf: gguf")
    child.expect(r"include \[y\]: ")
    child.sendline("")
    child.expect(r"id \[first\]: ")
    child.sendline("my-first")
    child.expect(r"profile \(fast, balanced, quality, low-memory\) \[balanced\]: ")
    child.sendline("nonsense")
    child.expect("unknown profile")
    child.sendline("low-memory")
    child.expect(r"include \[y\]: ")
    child.sendline("n")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0, child.before
    models = tomlkit.parse(out.read_text())["models"]
    assert [m["id"] for m in models] == ["my-first"]
    assert models[0]["config"]["n_ctx"] == 2048 and models[0]["config"]["n_gpu_layers"] == 0


def test_cli_without_the_extra_says_how_to_install(tmp_path: Path) -> None:
    code = (
        "import sys; sys.modules['tomlkit'] = None\n"
        "from heylook_core.cli import main\n"
        f"sys.exit(main(['import', '--folder', {str(tmp_path)!r}, '--output', {str(tmp_path / 'o.toml')!r}]))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert result.returncode == 2
    assert "pip install 'heylook-core[import]'" in result.stderr
