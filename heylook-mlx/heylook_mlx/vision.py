"""The mlx-vlm engine: chat with image parts (data URLs), several images per message, resized to a maximum side.

Runs on the model's worker thread. mlx-vlm's stream may deliver its text only in its last result, so the text is
joined as it comes and token counts are taken from mlx-vlm's own counters.
"""

from __future__ import annotations

import base64
import binascii
import io
import logging
from collections.abc import Iterator
from typing import Any

import mlx.core as mx
from mlx_vlm import load as vlm_load
from mlx_vlm.generate import stream_generate
from PIL import Image, UnidentifiedImageError

from heylook_core import BadRequestError, CancelToken, ChatMessage, ChatRequest, Delta, ImagePart, TextPart, Usage
from heylook_mlx.config import MLXConfig
from heylook_mlx.sampling import logit_bias_for
from heylook_mlx.text import resolve_model_path

logger = logging.getLogger(__name__)


def decode_image(url: str, max_side: int) -> Image.Image:
    """A ``data:image/...;base64,`` URL as an RGB image whose longest side is at most ``max_side``."""
    if not url.startswith("data:"):
        raise BadRequestError("images must be data URLs (data:image/png;base64,...)", param="messages")
    header, _, payload = url.partition(",")
    if ";base64" not in header or not payload:
        raise BadRequestError("an image data URL must be base64 encoded", param="messages")
    try:
        raw = base64.b64decode(payload, validate=False)
        decoded = Image.open(io.BytesIO(raw))
        decoded.load()
    except (binascii.Error, UnidentifiedImageError, OSError) as error:
        raise BadRequestError(f"an image could not be decoded: {error}", param="messages") from error
    image = decoded.convert("RGB")
    if max(image.size) > max_side:
        image.thumbnail((max_side, max_side), Image.Resampling.BICUBIC)
    return image


class VisionEngine:
    def __init__(self, model_id: str, config: MLXConfig) -> None:
        self.model_id = model_id
        self.config = config
        path = resolve_model_path(config.model_path)
        try:
            self.model, self.processor = vlm_load(path)
        except ValueError as error:
            raise ValueError(f"mlx-vlm cannot load '{config.model_path}': {error}") from error
        self.tokenizer = getattr(self.processor, "tokenizer", self.processor)
        model_config = getattr(self.model, "config", None)
        text_config = getattr(model_config, "text_config", None)
        self.vocab_size = int(getattr(text_config, "vocab_size", 0) or len(self.tokenizer))
        self.context_length = getattr(text_config, "max_position_embeddings", None)

    def close(self) -> None:
        self.model = None
        mx.clear_cache()

    def _messages(self, messages: list[ChatMessage]) -> tuple[list[dict[str, Any]], list[Image.Image]]:
        result: list[dict[str, Any]] = []
        images: list[Image.Image] = []
        for message in messages:
            if isinstance(message.content, list) and message.images():
                parts: list[dict[str, Any]] = []
                for part in message.content:
                    if isinstance(part, ImagePart):
                        images.append(decode_image(part.image_url.url, self.config.max_image_size))
                        parts.append({"type": "image"})
                    elif isinstance(part, TextPart):
                        parts.append({"type": "text", "text": part.text})
                result.append({"role": message.role, "content": parts})
            else:
                result.append({"role": message.role, "content": message.text()})
        return result, images

    def chat(self, request: ChatRequest, cancel: CancelToken) -> Iterator[Delta]:
        messages, images = self._messages(request.messages)
        thinking = request.enable_thinking if request.enable_thinking is not None else self.config.enable_thinking
        try:
            prompt = self.processor.apply_chat_template(
                messages, add_generation_prompt=True, tokenize=False, enable_thinking=thinking
            )
        except Exception as error:  # jinja2 raises for conversations a template refuses
            raise BadRequestError(f"the chat template rejected the messages: {error}", param="messages") from error
        return self._generate(prompt, images, request, cancel)

    def _generate(
        self, prompt: str, images: list[Image.Image], request: ChatRequest, cancel: CancelToken
    ) -> Iterator[Delta]:
        limit = request.max_tokens or self.config.max_tokens_default
        kwargs: dict[str, Any] = {
            "max_tokens": limit,
            "temperature": 1.0 if request.temperature is None else request.temperature,
            "prefill_step_size": self.config.prefill_step_size,
        }
        optional = {
            "top_p": request.top_p,
            "top_k": request.top_k,
            "min_p": request.min_p,
            "repetition_penalty": request.repetition_penalty,
            "presence_penalty": request.presence_penalty,
            "frequency_penalty": request.frequency_penalty,
            "logit_bias": logit_bias_for(request, self.vocab_size),
            "seed": request.seed,
        }
        kwargs.update({name: value for name, value in optional.items() if value is not None})
        if self.config.max_kv_size is not None:
            kwargs["max_kv_size"] = self.config.max_kv_size
        if self.config.kv_bits is not None:
            kwargs.update(
                kv_bits=self.config.kv_bits,
                kv_group_size=self.config.kv_group_size,
                quantized_kv_start=self.config.quantized_kv_start,
            )
        finish_reason = "length"
        prompt_tokens = completion_tokens = 0
        stream = stream_generate(self.model, self.processor, prompt, image=images or None, **kwargs)
        try:
            for result in stream:
                if cancel.cancelled:  # the client went away, or the core reached a stop sequence
                    finish_reason = "stop"
                    break
                prompt_tokens = result.prompt_tokens or prompt_tokens
                completion_tokens = result.generation_tokens or completion_tokens
                if result.finish_reason is not None:
                    finish_reason = result.finish_reason
                if result.text:
                    yield Delta(text=result.text)
        finally:
            stream.close()
        yield Delta(
            finish_reason=finish_reason, usage=Usage(prompt_tokens=prompt_tokens, completion_tokens=completion_tokens)
        )
