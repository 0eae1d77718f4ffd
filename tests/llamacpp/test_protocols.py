"""The same seeded prompt through Chat Completions, Anthropic Messages and Ollama's /api/chat: the same text.

Sampled (temperature 0.8, top_p 0.95, seed 11), not greedy: each request follows an unrelated prompt, so each
processes its whole prompt (a cached prefix's batch-dependent rounding could tip a sampled token), and then the
engine is deterministic for a seed whichever protocol the request came in on.
"""

from __future__ import annotations

import json

import httpx
import openai

from heylook_core.testing import ServerProcess

QUESTION = "Name three colors of the rainbow."
SAMPLING = {"temperature": 0.8, "top_p": 0.95}


def _other_prompt(client: openai.OpenAI) -> None:
    client.completions.create(model="gemma", prompt="Unrelated text in between", max_tokens=2, temperature=0)


def test_chat_completions_messages_and_ollama_give_the_same_sampled_text(
    client: openai.OpenAI, server: ServerProcess
) -> None:
    _other_prompt(client)
    chat = client.chat.completions.create(
        model="gemma", messages=[{"role": "user", "content": QUESTION}], max_tokens=20, seed=11, **SAMPLING
    )
    text = chat.choices[0].message.content
    assert text and chat.usage is not None

    _other_prompt(client)
    body = {"model": "gemma", "max_tokens": 20, "messages": [{"role": "user", "content": QUESTION}], "seed": 11}
    message = httpx.post(server.url + "/v1/messages", json={**body, **SAMPLING}, timeout=300).json()
    assert message["type"] == "message", message
    assert "".join(block["text"] for block in message["content"] if block["type"] == "text") == text
    assert message["usage"]["output_tokens"] == chat.usage.completion_tokens

    _other_prompt(client)
    streamed = []
    with httpx.stream("POST", server.url + "/v1/messages", json={**body, **SAMPLING, "stream": True}, timeout=300) as r:
        for line in r.iter_lines():
            if line.startswith("data: "):
                event = json.loads(line[6:])
                if event["type"] == "content_block_delta" and event["delta"]["type"] == "text_delta":
                    streamed.append(event["delta"]["text"])
    assert "".join(streamed) == text

    _other_prompt(client)
    options = {"num_predict": 20, "seed": 11, **SAMPLING}
    ollama = httpx.post(
        server.url + "/api/chat",
        json={
            "model": "gemma:latest",
            "messages": [{"role": "user", "content": QUESTION}],
            "options": options,
            "stream": False,
        },
        timeout=300,
    ).json()
    assert ollama["message"]["content"] == text
