"""Image parts of chat messages: checked, and fetched when remote images are allowed, before a provider sees them.

Providers receive only ``data:`` URLs. An ``http(s)`` URL is refused unless ``[server] allow_remote_images`` is set,
and even then never fetched from loopback, private, link-local or reserved addresses (IPv6 forms that embed such an
IPv4 address included). The name is resolved once and the connection goes to the address that was checked. Images
whose header gives more than ``max_image_pixels`` pixels are refused before any decoding.
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
DEFAULT_MAX_IMAGE_PIXELS = 50_000_000  # [server] max_image_pixels
FETCH_DEADLINE_S = 10.0  # for all the remote images of one request together, connecting and reading included
_ALLOW_LOOPBACK = False  # tests only: let remote image URLs reach 127.0.0.1 / ::1 (never private ranges)

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
_NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))
_V4_COMPATIBLE = ipaddress.ip_network("::/96")


def _embedded_v4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries (mapped, 6to4, Teredo, NAT64, IPv4-compatible), if any."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    if any(address in network for network in _NAT64) or address in _V4_COMPATIBLE:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def is_public_address(address: Address) -> bool:
    """Whether ``address`` is a global unicast address, checking the IPv4 address an IPv6 form may embed."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = _embedded_v4(address)
        if embedded is not None:
            return is_public_address(embedded)
    return address.is_global and not address.is_multicast


def _allowed(address: Address) -> bool:
    if is_public_address(address):
        return True
    if not _ALLOW_LOOPBACK:
        return False
    if isinstance(address, ipaddress.IPv6Address):
        address = _embedded_v4(address) or address
    return address.is_loopback


def image_size(data: bytes) -> tuple[int, int] | None:
    """Width and height from the header of a PNG, GIF, JPEG, WebP or BMP image, without decoding it."""
    if data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) >= 24:
        return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    if data[:6] in (b"GIF87a", b"GIF89a") and len(data) >= 10:
        return int.from_bytes(data[6:8], "little"), int.from_bytes(data[8:10], "little")
    if data[:2] == b"BM" and len(data) >= 26:
        return abs(int.from_bytes(data[18:22], "little", signed=True)), abs(
            int.from_bytes(data[22:26], "little", signed=True)
        )
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP" and len(data) >= 30:
        chunk = data[12:16]
        if chunk == b"VP8X":
            return 1 + int.from_bytes(data[24:27], "little"), 1 + int.from_bytes(data[27:30], "little")
        if chunk == b"VP8L":
            bits = int.from_bytes(data[21:25], "little")
            return 1 + (bits & 0x3FFF), 1 + ((bits >> 14) & 0x3FFF)
        if chunk == b"VP8 ":
            return int.from_bytes(data[26:28], "little") & 0x3FFF, int.from_bytes(data[28:30], "little") & 0x3FFF
        return None
    if data[:2] == b"\xff\xd8":
        index = 2
        while index + 9 < len(data):
            if data[index] != 0xFF:
                return None
            marker = data[index + 1]
            if marker == 0xFF:  # fill byte
                index += 1
                continue
            if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:  # markers without a length
                index += 2
                continue
            length = int.from_bytes(data[index + 2 : index + 4], "big")
            if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):  # start of frame
                return int.from_bytes(data[index + 7 : index + 9], "big"), int.from_bytes(
                    data[index + 5 : index + 7], "big"
                )
            index += 2 + length
    return None


def _check_pixels(data: bytes, max_pixels: int, param: str) -> None:
    size = image_size(data)
    if size is not None and size[0] * size[1] > max_pixels:
        raise BadRequestError(
            f"image is {size[0]}x{size[1]} pixels, more than max_image_pixels = {max_pixels}", param=param
        )


def _check_data_url(url: str, param: str, max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS) -> None:
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
    _check_pixels(raw, max_pixels, param)


def _is_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


async def _resolve_once(host: str, port: int, param: str) -> Address:
    """Resolve ``host`` once and return the address to connect to; every address it has must be public."""
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        raise BadRequestError(f"image host '{host[:100]}' does not resolve", param=param) from None
    addresses = [ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]) for info in infos]
    if not addresses or not all(_allowed(address) for address in addresses):
        raise BadRequestError(f"image URLs may not point at non-public addresses ({host[:100]})", param=param)
    return addresses[0]


async def _fetch(url: str, param: str, max_pixels: int) -> str:
    parts = urlsplit(url)
    host = parts.hostname or ""
    try:
        port = parts.port or (443 if parts.scheme.lower() == "https" else 80)
    except ValueError:
        raise BadRequestError("image URL has an invalid port", param=param) from None
    address = await _resolve_once(host, port, param)
    # Connect to the address that was checked (no second lookup a rebinding name could answer differently); the
    # Host header and, for https, the TLS server name and certificate check still use the URL's name.
    literal = f"[{address}]" if address.version == 6 else str(address)
    pinned = parts._replace(netloc=f"{literal}:{port}").geturl()
    netloc_host = f"[{host}]" if ":" in host else host
    headers = {"Host": netloc_host if parts.port is None else f"{netloc_host}:{parts.port}"}
    named = parts.scheme.lower() == "https" and not _is_literal(host)
    extensions = {"sni_hostname": host} if named else {}
    try:
        async with httpx.AsyncClient(timeout=FETCH_DEADLINE_S, follow_redirects=False, trust_env=False) as client:
            async with client.stream("GET", pinned, headers=headers, extensions=extensions) as response:
                if response.status_code != 200:
                    raise BadRequestError(f"fetching the image gave HTTP {response.status_code}", param=param)
                kind = response.headers.get("content-type", "").split(";")[0].strip()
                if not kind.startswith("image/"):
                    raise BadRequestError(f"the URL is not an image (content type '{kind[:100]}')", param=param)
                data = bytearray()
                checked = False
                async for chunk in response.aiter_bytes():
                    data += chunk
                    if len(data) > MAX_IMAGE_BYTES:
                        raise BadRequestError(f"image is larger than {MAX_IMAGE_BYTES} bytes", param=param)
                    if not checked and len(data) >= 64 * 1024:  # the header is in: refuse a huge image early
                        _check_pixels(bytes(data), max_pixels, param)
                        checked = True
    except httpx.HTTPError as error:
        raise BadRequestError(f"could not fetch the image: {type(error).__name__}", param=param) from None
    _check_pixels(bytes(data), max_pixels, param)
    return f"data:{kind};base64,{base64.b64encode(data).decode('ascii')}"


async def resolve_images(
    request: ChatRequest, allow_remote: bool, *, max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS
) -> None:
    """Check every image part; replace allowed remote URLs with data URLs.

    Remote fetches share one deadline (``FETCH_DEADLINE_S``) for the whole request, not one per read.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + FETCH_DEADLINE_S
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
                _check_data_url(url, param, max_pixels)
            elif scheme in ("http", "https"):
                if not allow_remote:
                    raise BadRequestError(
                        "remote image URLs are off; send a data URL, or set [server] allow_remote_images = true",
                        param=param,
                    )
                try:
                    part.image_url.url = await asyncio.wait_for(
                        _fetch(url, param, max_pixels), max(0.0, deadline - loop.time())
                    )
                except asyncio.TimeoutError:
                    raise BadRequestError(
                        f"fetching the request's images took longer than {FETCH_DEADLINE_S:g} s", param=param
                    ) from None
            else:
                raise BadRequestError(f"unsupported image URL scheme '{scheme[:20]}'", param=param)


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
