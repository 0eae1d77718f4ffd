"""Vision chat through mlx-vlm with a tiny Qwen2-VL: image parts as data URLs, several per message, resized."""

from __future__ import annotations

import base64
import io

import openai
import pytest
from PIL import Image

pytestmark = pytest.mark.slow


def data_url(color: tuple[int, int, int], size: tuple[int, int]) -> str:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, "PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def message(*urls: str, text: str = "What is in the picture?") -> list[dict]:
    parts: list[dict] = [{"type": "image_url", "image_url": {"url": url}} for url in urls]
    return [{"role": "user", "content": [*parts, {"type": "text", "text": text}]}]


def ask(client: openai.OpenAI, messages: list[dict], **kwargs):
    kwargs.setdefault("max_tokens", 8)
    return client.chat.completions.create(model="tiny-vl", messages=messages, temperature=0, **kwargs)


def test_image_chat(client: openai.OpenAI) -> None:
    red = data_url((255, 0, 0), (64, 64))
    result = ask(client, message(red))
    assert result.choices[0].finish_reason == "length"
    assert result.usage.completion_tokens == 8
    assert result.choices[0].message.content
    text_only = ask(client, [{"role": "user", "content": "What is in the picture?"}])
    assert result.usage.prompt_tokens > text_only.usage.prompt_tokens
    assert ask(client, message(red)).choices[0].message.content == result.choices[0].message.content
    blue = ask(client, message(data_url((0, 0, 255), (64, 64))))
    assert blue.usage.prompt_tokens == result.usage.prompt_tokens


def test_several_images_and_resizing(client: openai.OpenAI) -> None:
    small = data_url((0, 200, 0), (64, 48))
    large = data_url((0, 200, 0), (640, 480))  # resized to 64 x 48 by max_image_size = 64
    one = ask(client, message(small))
    two = ask(client, message(small, data_url((0, 0, 200), (64, 48))))
    assert two.usage.prompt_tokens > one.usage.prompt_tokens
    resized = ask(client, message(large))
    assert resized.usage.prompt_tokens == one.usage.prompt_tokens
    assert resized.choices[0].message.content == one.choices[0].message.content


def test_vision_stream_and_stop(client: openai.OpenAI, special_ids_vl: dict[str, int]) -> None:
    messages = message(data_url((9, 9, 9), (32, 32)))
    whole = ask(client, messages, max_tokens=10).choices[0].message.content
    chunks = list(ask(client, messages, max_tokens=10, stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == whole
    stopped = ask(client, messages, logit_bias={str(special_ids_vl["<|im_end|>"]): 100})
    assert stopped.choices[0].finish_reason == "stop"
    assert stopped.choices[0].message.content == ""


def test_bad_images_are_rejected(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError, match="could not be decoded"):
        ask(client, message("data:image/png;base64," + base64.b64encode(b"not a png").decode()))
    with pytest.raises(openai.BadRequestError, match="does not support image inputs"):
        client.chat.completions.create(model="tiny", messages=message(data_url((1, 2, 3), (8, 8))), max_tokens=2)
    with pytest.raises(openai.BadRequestError, match="logprobs"):
        ask(client, message(data_url((1, 2, 3), (8, 8))), logprobs=True)


def test_multipart_upload_matches_data_url(client: openai.OpenAI) -> None:
    import json

    import httpx

    red = data_url((255, 0, 0), (64, 64))
    expected = ask(client, message(red))
    png = base64.b64decode(red.split(",", 1)[1])
    # the same message, the image sent as a file part that the image part refers to
    body = {"model": "tiny-vl", "max_tokens": 8, "temperature": 0, "messages": message("upload:red.png")}
    response = httpx.post(
        f"{client.base_url}chat/completions/multipart",
        data={"request": json.dumps(body)},
        files=[("images", ("red.png", png, "image/png"))],
        timeout=120,
    )
    assert response.status_code == 200, response.text
    reply = response.json()
    assert reply["choices"][0]["message"]["content"] == expected.choices[0].message.content
    assert reply["usage"]["prompt_tokens"] == expected.usage.prompt_tokens
