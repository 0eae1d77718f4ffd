"""Ollama's /api/chat and /api/generate on the real engine: the same text as Chat Completions for the same seed."""

from __future__ import annotations

import json

import httpx
import openai

from heylook_core.testing import ServerProcess

QUESTION = "Name three colors of the rainbow."
# Greedy: the comparison across protocols needs no sampling (seeded sampling is reproducible too: the conformance
# suite's test_seed checks it on this engine).
SAMPLING = {"temperature": 0.0, "top_p": 0.95, "seed": 11}


def test_ollama_chat_gives_the_same_text_as_chat_completions(client: openai.OpenAI, server: ServerProcess) -> None:
    messages = [{"role": "user", "content": QUESTION}]
    chat = client.chat.completions.create(model="gemma", messages=messages, max_tokens=24, **SAMPLING)  # type: ignore[arg-type]
    text = chat.choices[0].message.content
    assert text and chat.usage is not None
    body = {"model": "gemma:latest", "messages": messages, "options": {"num_predict": 24, **SAMPLING}}
    whole = httpx.post(server.url + "/api/chat", json={**body, "stream": False}, timeout=300).json()
    assert whole["message"]["content"] == text
    assert whole["prompt_eval_count"] == chat.usage.prompt_tokens
    assert whole["eval_count"] == chat.usage.completion_tokens
    assert whole["done_reason"] == ("length" if chat.choices[0].finish_reason == "length" else "stop")
    assert whole["eval_duration"] > 0 and whole["total_duration"] >= whole["eval_duration"]
    with httpx.stream("POST", server.url + "/api/chat", json=body, timeout=300) as response:
        lines = [json.loads(line) for line in response.iter_lines() if line]
    assert "".join(line["message"]["content"] for line in lines) == text
    assert lines[-1]["done"] is True and lines[-1]["eval_count"] == chat.usage.completion_tokens


def test_ollama_show_and_tags_report_the_gguf(server: ServerProcess) -> None:
    shown = httpx.post(server.url + "/api/show", json={"model": "gemma"}, timeout=60).json()
    assert shown["details"]["format"] == "gguf"
    assert shown["model_info"][f"{shown['model_info']['general.architecture']}.context_length"] == 1024
    assert "completion" in shown["capabilities"]
    tags = httpx.get(server.url + "/api/tags", timeout=60).json()["models"]
    gemma = next(model for model in tags if model["name"] == "gemma:latest")
    assert gemma["size"] > 100_000_000 and gemma["details"]["format"] == "gguf"  # the GGUF file's own size
