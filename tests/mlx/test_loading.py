"""Load errors are clear and leave the server serving; the plugin stays light; doctor reports MLX."""

from __future__ import annotations

import platform
import subprocess
import sys

import httpx
import openai
import pytest
from pydantic import ValidationError

from heylook_core.testing import ServerProcess, heylookllm_command
from heylook_mlx.config import MLXConfig
from heylook_mlx.plugin import check

pytestmark = pytest.mark.slow


def test_missing_folder_and_unknown_architecture(server: ServerProcess, client: openai.OpenAI) -> None:
    for model, words in (("missing", "does not exist"), ("unknown-arch", "no_such_architecture")):
        response = httpx.post(
            server.base_url + "/chat/completions",
            json={"model": model, "messages": [{"role": "user", "content": "hi"}]},
            timeout=60,
        )
        assert response.status_code == 503, response.text
        error = response.json()["error"]
        assert error["code"] == "model_load_failed"
        assert words not in error["message"] and words in server.log()  # the detail goes to the log
        assert model in error["message"]
    assert client.chat.completions.create(
        model="tiny", messages=[{"role": "user", "content": "hi"}], max_tokens=2
    ).choices[0].finish_reason in ("length", "stop")
    assert httpx.get(server.url + "/health").status_code == 200


def test_models_list_capabilities(client: openai.OpenAI) -> None:
    models = {model.id: model.model_extra for model in client.models.list().data}
    assert set(models["tiny"]["capabilities"]) == {"chat", "completion", "batch_chat", "hidden_states", "tokenize"}
    assert set(models["tiny-vl"]["capabilities"]) == {"chat", "vision"}
    assert models["minilm"]["capabilities"] == ["embeddings"]
    assert "logprobs" in models["tiny"]["parameters"]
    assert "response_format" not in models["tiny"]["parameters"]


def test_plugin_import_does_not_import_mlx() -> None:
    code = "import sys, heylook_mlx.plugin; print(sorted(m for m in sys.modules if m.split('.')[0].startswith('mlx')))"
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert output.strip() == "[]"


def test_config_schema() -> None:
    with pytest.raises(ValidationError, match="extra"):
        MLXConfig(model_path="x", temp=1)
    with pytest.raises(ValidationError, match="cannot both"):
        MLXConfig(model_path="x", vision=True, embedding=True)
    with pytest.raises(ValidationError):
        MLXConfig(model_path="x", kv_bits=1)
    for other in ({"vision": True}, {"embedding": True}, {"draft_model": "y"}, {"kv_bits": 4}):
        with pytest.raises(ValidationError, match="concurrency"):
            MLXConfig(model_path="x", concurrency=2, **other)
    assert MLXConfig(model_path="x", concurrency=1, kv_bits=4).concurrency == 1


def test_doctor_reports_mlx() -> None:
    assert check().ok, check()
    result = subprocess.run(
        [*heylookllm_command(), "doctor"],
        capture_output=True,
        text=True,
        env={"HEYLOOK_LOAD_PLUGINS": "mlx", "PATH": "/usr/bin:/bin", "HOME": "/tmp"},
    )
    assert "mlx" in result.stdout
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.skipif(platform.system() != "Linux", reason="the cpu and cuda extras are the fix on Linux only")
def test_doctor_explains_a_missing_native_library(tmp_path) -> None:
    # what `pip install mlx` alone gives on Linux: the Python package without its native library
    fake = tmp_path / "mlx"
    fake.mkdir()
    (fake / "__init__.py").write_text("", encoding="utf-8")
    code = "from heylook_mlx.plugin import check; r = check(); print(r.ok); print(r.detail); print(r.fix)"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env={"PYTHONPATH": str(tmp_path)}
    )
    ok, detail, fix = result.stdout.splitlines()
    assert ok == "False"
    assert "mlx cannot be imported" in detail
    assert "heylook-mlx[cpu]" in fix
    assert "heylook-mlx[cuda]" in fix
