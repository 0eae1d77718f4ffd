"""Remote image fetching and image limits (issue 18, item 6), against local loopback servers only."""

from __future__ import annotations

import base64
import http.server
import ipaddress
import socket
import struct
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from heylook_core import images
from tests.core.conftest import EXAMPLE

REMOTE = EXAMPLE + "[server]\nallow_remote_images = true\n"


def png(width: int, height: int) -> bytes:
    """A PNG whose header says ``width`` x ``height`` (only the header: enough to be refused before decoding)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    return b"\x89PNG\r\n\x1a\n" + struct.pack(">I", len(ihdr)) + chunk + struct.pack(">I", zlib.crc32(chunk))


def chat_with_image(url: str) -> dict[str, Any]:
    part = {"type": "image_url", "image_url": {"url": url}}
    return {"messages": [{"role": "user", "content": [{"type": "text", "text": "what"}, part]}]}


@pytest.fixture
def image_server() -> Iterator[Callable[[Callable[[http.server.BaseHTTPRequestHandler], None]], int]]:
    """Start a loopback HTTP server whose GET is answered by the given function; returns its port."""
    servers: list[http.server.ThreadingHTTPServer] = []

    def start(respond: Callable[[http.server.BaseHTTPRequestHandler], None]) -> int:
        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - the http.server name
                try:
                    respond(self)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def log_message(self, *args: Any) -> None:
                pass

        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return int(server.server_address[1])

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.fixture
def loopback_images(monkeypatch: pytest.MonkeyPatch) -> None:
    """The test-only switch that lets image URLs reach 127.0.0.1 (private ranges stay refused)."""
    monkeypatch.setattr(images, "_ALLOW_LOOPBACK", True)


def serve_image(body: bytes, seen: list[str] | None = None) -> Callable[[Any], None]:
    def respond(handler: Any) -> None:
        if seen is not None:
            seen.append(handler.headers["Host"])
        handler.send_response(200)
        handler.send_header("Content-Type", "image/png")
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    return respond


@pytest.mark.parametrize(
    "host",
    [
        "[::127.0.0.1]",
        "[::ffff:127.0.0.1]",
        "[::ffff:7f00:1]",
        "[64:ff9b::127.0.0.1]",
        "[64:ff9b::a00:1]",
        "[64:ff9b:1::a00:1]",
        "[2002:7f00:1::]",
        "[2002:a00:1::]",
        "[::ffff:192.168.1.1]",
        "[fd00::1]",
        "[fe80::1]",
        "[::]",
        "0.0.0.0",
        "169.254.169.254",
    ],
)
def test_ipv6_and_other_forms_of_private_addresses_are_refused(make_client: Any, host: str) -> None:
    client = make_client(REMOTE)
    response = client.post("/v1/chat/completions", json=chat_with_image(f"http://{host}/cat.png"))
    assert response.status_code == 400, response.text
    assert "non-public" in response.json()["error"]["message"]


def test_public_address_check() -> None:
    for text in ("8.8.8.8", "64:ff9b::808:808", "2002:808:808::1", "2606:4700:4700::1111", "::ffff:8.8.8.8"):
        assert images.is_public_address(ipaddress.ip_address(text)), text
    for text in ("::127.0.0.1", "64:ff9b::7f00:1", "::ffff:10.1.2.3", "2002:c0a8:101::", "ff02::1", "224.0.0.1"):
        assert not images.is_public_address(ipaddress.ip_address(text)), text


def test_a_slow_drip_server_hits_one_deadline_for_the_request(
    make_client: Any, image_server: Any, loopback_images: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(images, "FETCH_DEADLINE_S", 1.0)

    def drip(handler: Any) -> None:
        handler.send_response(200)
        handler.send_header("Content-Type", "image/png")
        handler.send_header("Content-Length", "100000")
        handler.end_headers()
        for _ in range(100):  # one byte every 0.1 s: each read is quick, the whole would take 10 s
            handler.wfile.write(b"\0")
            handler.wfile.flush()
            time.sleep(0.1)

    port = image_server(drip)
    client = make_client(REMOTE)
    started = time.monotonic()
    response = client.post("/v1/chat/completions", json=chat_with_image(f"http://127.0.0.1:{port}/cat.png"))
    elapsed = time.monotonic() - started
    assert response.status_code == 400, response.text
    assert "took longer than 1 s" in response.json()["error"]["message"]
    assert elapsed < 4


def test_the_name_is_resolved_once_and_the_checked_address_used(
    make_client: Any, image_server: Any, loopback_images: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[str] = []
    port = image_server(serve_image(png(2, 2), seen))
    real = socket.getaddrinfo
    lookups: list[str] = []

    def rebinding(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host == "rebind.test":  # first answer passes the check; a second lookup would get a private address
            lookups.append(host)
            target = "127.0.0.1" if len(lookups) == 1 else "10.255.255.1"
            return real(target, *args, **kwargs)
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    client = make_client(REMOTE)
    response = client.post("/v1/chat/completions", json=chat_with_image(f"http://rebind.test:{port}/cat.png"))
    assert response.status_code == 200, response.text
    assert response.json()["choices"][0]["message"]["content"].startswith("[1 image]")
    assert lookups == ["rebind.test"]
    assert seen == [f"rebind.test:{port}"]  # the Host header keeps the name


def test_pixel_limit_is_checked_from_the_header(make_client: Any, image_server: Any, loopback_images: None) -> None:
    client = make_client(REMOTE)
    huge = "data:image/png;base64," + base64.b64encode(png(20000, 20000)).decode()
    response = client.post("/v1/chat/completions", json=chat_with_image(huge))
    assert response.status_code == 400, response.text
    assert "20000x20000 pixels" in response.json()["error"]["message"]
    small = "data:image/png;base64," + base64.b64encode(png(64, 64)).decode()
    assert client.post("/v1/chat/completions", json=chat_with_image(small)).status_code == 200

    port = image_server(serve_image(png(20000, 20000)))
    response = client.post("/v1/chat/completions", json=chat_with_image(f"http://127.0.0.1:{port}/huge.png"))
    assert response.status_code == 400 and "pixels" in response.json()["error"]["message"]

    files = {"images": ("huge.png", png(20000, 20000), "image/png")}
    request = '{"messages": [{"role": "user", "content": "what"}]}'
    response = client.post("/v1/chat/completions/multipart", data={"request": request}, files=files)
    assert response.status_code == 400 and "pixels" in response.json()["error"]["message"]


@pytest.mark.parametrize(
    ("data", "size"),
    [
        (png(3, 5), (3, 5)),
        (b"GIF89a" + struct.pack("<HH", 7, 9) + b"\0" * 10, (7, 9)),
        (b"BM" + b"\0" * 16 + struct.pack("<ii", 11, -13) + b"\0" * 8, (11, 13)),
        (
            b"\xff\xd8\xff\xe0\x00\x04ab\xff\xc0\x00\x11\x08" + struct.pack(">HH", 480, 640) + b"\0" * 12,
            (640, 480),
        ),
        (b"RIFF\0\0\0\0WEBPVP8X" + b"\0" * 8 + (99).to_bytes(3, "little") + (49).to_bytes(3, "little"), (100, 50)),
        (b"AAAA", None),
    ],
)
def test_image_size_from_headers(data: bytes, size: tuple[int, int] | None) -> None:
    assert images.image_size(data) == size


def test_the_configured_pixel_limit_applies(make_client: Any) -> None:
    """``[server] max_image_pixels`` from models.toml reaches the check (not only its default)."""
    import base64

    client = make_client(EXAMPLE + "[server]\nmax_image_pixels = 100\n")
    small = "data:image/png;base64," + base64.b64encode(png(10, 10)).decode()
    large = "data:image/png;base64," + base64.b64encode(png(20, 20)).decode()
    assert client.post("/v1/chat/completions", json=chat_with_image(small)).status_code == 200
    refused = client.post("/v1/chat/completions", json=chat_with_image(large))
    assert refused.status_code == 400
    assert "pixels" in refused.json()["error"]["message"]
