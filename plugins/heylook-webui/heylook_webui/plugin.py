"""The web page plugin's entry point module: serves the static page under ``/ui`` through ``register_routes``.

The page is a handful of files shipped in the wheel (``heylook_webui/static``): plain ES modules and CSS, no build
step, no network. It talks to the server through the same API every client uses (``/v1/models``,
``/v1/chat/completions``, ``/health``, ``/-/plugins``, ``/v1/admin/*``), from the server's own origin, so the core's
Origin check lets its POSTs through.

The page and its assets need no API key (they hold no secret and name no model); the API calls the page makes do,
when the server requires one, and the page asks for it.
"""

from __future__ import annotations

import logging
from functools import cache
from importlib.resources import files

from fastapi import APIRouter, Response

from heylook_core import NotFoundError, hookimpl

HEYLOOK_CONTRACT = ">=1,<2"  # the heylook plugin contract versions this plugin supports (docs/plugins.md)

logger = logging.getLogger(__name__)

MEDIA_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
}

# Everything comes from this origin; model text is rendered as escaped HTML, and this is the second line.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; connect-src 'self'; "
        "object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


@cache
def assets() -> dict[str, tuple[bytes, str]]:
    """The shipped files by name, with their media types, read once."""
    found: dict[str, tuple[bytes, str]] = {}
    for item in (files("heylook_webui") / "static").iterdir():
        suffix = "." + item.name.rpartition(".")[2]
        if item.is_file() and suffix in MEDIA_TYPES:
            found[item.name] = (item.read_bytes(), MEDIA_TYPES[suffix])
    return found


def _asset(name: str) -> Response:
    found = assets().get(name)
    if found is None:
        raise NotFoundError(f"no such file in the web page: {name[:64]!r}")
    body, media_type = found
    return Response(body, media_type=media_type, headers=SECURITY_HEADERS)


@hookimpl
def register_routes(router: APIRouter) -> None:
    @router.get("/ui", include_in_schema=False)
    async def webui_page() -> Response:
        """The page; a browser opening ``/`` is sent here."""
        return _asset("index.html")

    @router.get("/ui/{name}", include_in_schema=False)
    async def webui_asset(name: str) -> Response:
        return _asset(name)
