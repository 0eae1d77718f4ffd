"""Image parts of chat messages: checked, and fetched when remote images are allowed, before a provider sees them.

Providers receive only ``data:`` URLs. An ``http(s)`` URL is refused unless ``[server] allow_remote_images`` is set,
and even then never fetched from loopback, private, link-local or reserved addresses.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import ipaddress
import socket
from urllib.parse import urlsplit

import httpx
from fastapi import UploadFile

from heylook_core.errors import BadRequestError
from heylook_core.types import ChatRequest, ImagePart, ImageURL, TextPart

MAX_IMAGE_BYTES = 20 * 1024 * 1024


def _check_data_url(url: str, param: str) -> None:
    header, _, payload = url.partition(",")
    if not header.startswith("data:image/") or ";base64" not in header:
        raise BadRequestError("image data URLs must look like 'data:image/<type>;base64,<data>'", param=param)
    try:
        raw = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise BadRequestError("image data URL is not valid base64", param=param) from None
    if not raw:
        raise BadRequestError("image data URL is empty", param=param)
    if len(raw) > MAX_IMAGE_BYTES:
        raise BadRequestError(f"image is larger than {MAX_IMAGE_BYTES} bytes", param=param)


async def _public_host(host: str, param: str) -> None:
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except socket.gaierror:
        raise BadRequestError(f"image host '{host}' does not resolve", param=param) from None
    for info in infos:
        address = ipaddress.ip_address(info[4][0])
        if not address.is_global:
            raise BadRequestError(f"image URLs may not point at non-public addresses ({host})", param=param)


async def _fetch(url: str, param: str) -> str:
    parts = urlsplit(url)
    await _public_host(parts.hostname or "", param)
    try:
        async with httpx.AsyncClient(timeout=10.0, follow_redirects=False) as client:
            async with client.stream("GET", url) as response:
                if response.status_code != 200:
                    raise BadRequestError(f"fetching the image gave HTTP {response.status_code}", param=param)
                kind = response.headers.get("content-type", "").split(";")[0].strip()
                if not kind.startswith("image/"):
                    raise BadRequestError(f"the URL is not an image (content type '{kind}')", param=param)
                data = b""
                async for chunk in response.aiter_bytes():
                    data += chunk
                    if len(data) > MAX_IMAGE_BYTES:
                        raise BadRequestError(f"image is larger than {MAX_IMAGE_BYTES} bytes", param=param)
    except httpx.HTTPError as error:
        raise BadRequestError(f"could not fetch the image: {error}", param=param) from None
    return f"data:{kind};base64,{base64.b64encode(data).decode('ascii')}"


async def resolve_images(request: ChatRequest, allow_remote: bool) -> None:
    """Check every image part; replace allowed remote URLs with data URLs."""
    for index, message in enumerate(request.messages):
        if not isinstance(message.content, list):
            continue
        for part_index, part in enumerate(message.content):
            if not isinstance(part, ImagePart):
                continue
            param = f"messages[{index}].content[{part_index}].image_url.url"
            url = part.image_url.url
            scheme = urlsplit(url).scheme.lower()
            if scheme == "data":
                _check_data_url(url, param)
            elif scheme in ("http", "https"):
                if not allow_remote:
                    raise BadRequestError(
                        "remote image URLs are off; send a data URL, or set [server] allow_remote_images = true",
                        param=param,
                    )
                part.image_url.url = await _fetch(url, param)
            else:
                raise BadRequestError(f"unsupported image URL scheme '{scheme}'", param=param)


async def attach_uploads(request: ChatRequest, uploads: list[UploadFile]) -> None:
    """Put uploaded image files into the request as data URLs (see ``/v1/chat/completions/multipart``)."""
    urls: list[str] = []
    for index, upload in enumerate(uploads):
        kind = (upload.content_type or "").split(";")[0].strip()
        if not kind.startswith("image/"):
            raise BadRequestError(
                f"upload {index} ('{upload.filename}') is not an image (content type '{kind}')", param="images"
            )
        data = await upload.read()
        if not data:
            raise BadRequestError(f"upload {index} ('{upload.filename}') is empty", param="images")
        if len(data) > MAX_IMAGE_BYTES:
            raise BadRequestError(f"upload {index} is larger than {MAX_IMAGE_BYTES} bytes", param="images")
        urls.append(f"data:{kind};base64,{base64.b64encode(data).decode('ascii')}")
    names = {upload.filename: index for index, upload in enumerate(uploads) if upload.filename}
    used: set[int] = set()
    for message in request.messages:
        if not isinstance(message.content, list):
            continue
        for part in message.content:
            if isinstance(part, ImagePart) and part.image_url.url.startswith("upload:"):
                ref = part.image_url.url.removeprefix("upload:").removeprefix("//")
                index = int(ref) if ref.isdigit() else names.get(ref, -1)
                if not 0 <= index < len(urls):
                    raise BadRequestError(
                        f"image part refers to '{part.image_url.url}', which was not uploaded", param="request.messages"
                    )
                part.image_url.url = urls[index]
                used.add(index)
    rest = [url for index, url in enumerate(urls) if index not in used]
    if not rest:
        return
    target = next((m for m in reversed(request.messages) if m.role == "user"), None)
    if target is None:
        raise BadRequestError("uploaded images need a user message to go with", param="images")
    parts = (
        [TextPart(type="text", text=target.content)] if isinstance(target.content, str) else list(target.content or [])
    )
    parts += [ImagePart(type="image_url", image_url=ImageURL(url=url)) for url in rest]
    target.content = parts
