"""API keys with names and per-minute limits.

``[server] api_keys`` holds plain strings (named ``key-1``, ``key-2``, ... by position) and named keys
(``{name = "alice", key = "...", rpm = 60, tpm = 10000}``); ``[server] api_key_file`` adds one ``name:key`` a line
(``#`` comments and blank lines are skipped), read at start and again on ``POST /v1/admin/reload``. A request's key
is matched in constant time against every key; its *name* (never the key) goes to the request's context, the
generation context (analytics), the log of refusals and a metrics label. Over ``rpm`` requests or ``tpm`` tokens
(prompt plus generated) in the last 60 seconds, a request gets 429 with ``Retry-After``.
"""

from __future__ import annotations

import hmac
import logging
import math
import time
from collections import deque
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from heylook_core.errors import ConfigError, RateLimitError

if TYPE_CHECKING:
    from heylook_core.config import ServerSettings
    from heylook_core.server import Server

logger = logging.getLogger(__name__)

WINDOW_S = 60.0


@dataclass
class KeyState:
    """One key: its name, limits and the last minute's requests and tokens."""

    name: str
    key: bytes
    rpm: int | None = None
    tpm: int | None = None
    requests: deque[float] = field(default_factory=deque)
    tokens: deque[tuple[float, int]] = field(default_factory=deque)

    def _trim(self, now: float) -> None:
        while self.requests and self.requests[0] <= now - WINDOW_S:
            self.requests.popleft()
        while self.tokens and self.tokens[0][0] <= now - WINDOW_S:
            self.tokens.popleft()

    def admit(self, now: float) -> None:
        """Count one request, or raise a 429 with ``Retry-After`` when a limit is reached."""
        self._trim(now)
        if self.rpm is not None and len(self.requests) >= self.rpm:
            wait = self.requests[len(self.requests) - self.rpm] + WINDOW_S - now
            raise _limited(self.name, f"{self.rpm} requests per minute", wait, "rpm")
        if self.tpm is not None:
            used = sum(count for _, count in self.tokens)
            if used >= self.tpm:
                wait, left = WINDOW_S, used
                for stamp, count in self.tokens:  # when enough of the window's tokens expire to be under the limit
                    left -= count
                    if left < self.tpm:
                        wait = stamp + WINDOW_S - now
                        break
                raise _limited(self.name, f"{self.tpm} tokens per minute", wait, "tpm")
        if self.rpm is not None:
            self.requests.append(now)

    def record_tokens(self, count: int, now: float | None = None) -> None:
        if self.tpm is not None and count > 0:
            self.tokens.append((time.monotonic() if now is None else now, count))


def _limited(name: str, limit: str, wait: float, code: str) -> RateLimitError:
    seconds = max(1, math.ceil(wait))
    logger.warning("API key '%s' is over its limit of %s; retry after %d s", name, limit, seconds)
    return RateLimitError(
        f"rate limit of this API key reached ({limit}); retry after {seconds} s",
        code=f"rate_limit_{code}",
        headers={"Retry-After": str(seconds)},
    )


# The key of the request being served (set by the API key check, read by the generation service and metrics).
CURRENT_KEY: ContextVar[KeyState | None] = ContextVar("heylook_api_key", default=None)


def current_key_name() -> str | None:
    key = CURRENT_KEY.get()
    return key.name if key is not None else None


def read_key_file(path: Path) -> list[tuple[str, str]]:
    """``name:key`` lines; a line without a colon, a blank name or key, or a name used twice is a ConfigError."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigError(f"[server] api_key_file {path}: cannot read it: {error.strerror or error}") from None
    pairs: list[tuple[str, str]] = []
    seen: set[str] = set()
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, colon, key = line.partition(":")
        name, key = name.strip(), key.strip()
        if not colon or not name or not key:
            raise ConfigError(f"{path}:{number}: expected 'name:key' (the key is not shown here)")
        if name in seen:
            raise ConfigError(f"{path}:{number}: the name '{name}' is used twice")
        seen.add(name)
        pairs.append((name, key))
    return pairs


class KeyRing:
    """The keys a server accepts; rebuilt when the settings change, carrying each name's window over."""

    def __init__(self, settings: ServerSettings, base: Path | None = None, previous: KeyRing | None = None) -> None:
        from heylook_core.config import NamedKey

        self.settings = settings
        self.snapshot = list(settings.api_keys)
        keys: list[KeyState] = []
        for index, item in enumerate(settings.api_keys, 1):
            if isinstance(item, NamedKey):
                keys.append(KeyState(item.name, item.key.encode("utf-8"), item.rpm, item.tpm))
            else:
                keys.append(KeyState(f"key-{index}", item.encode("utf-8")))
        if settings.api_key_file:
            path = Path(settings.api_key_file).expanduser()
            if not path.is_absolute() and base is not None:
                path = base / path
            for name, secret in read_key_file(path):
                keys.append(KeyState(name, secret.encode("utf-8")))
        names = [key.name for key in keys]
        twice = sorted({name for name in names if names.count(name) > 1})
        if twice:
            raise ConfigError(f"API key names used twice (api_keys and api_key_file): {', '.join(twice)}")
        if previous is not None:
            old = {key.name: key for key in previous.keys}
            for key in keys:
                if key.name in old:
                    key.requests, key.tokens = old[key.name].requests, old[key.name].tokens
        self.keys: list[KeyState] = keys

    def names(self) -> list[str]:
        return [key.name for key in self.keys]

    def current(self, settings: ServerSettings) -> bool:
        return settings is self.settings and self.snapshot == list(settings.api_keys)

    def match(self, tokens: list[str]) -> KeyState | None:
        """The key one of ``tokens`` is, comparing each against every key so the time says nothing."""
        found: KeyState | None = None
        for token in tokens:
            raw = token.encode("utf-8")
            for key in self.keys:
                if hmac.compare_digest(raw, key.key) and found is None:
                    found = key
        return found


def _base(server: Server) -> Path | None:
    source = getattr(server, "config_path", None) or server.settings.source
    if source and source != "plugins":
        return Path(source).expanduser().resolve().parent
    return None


def keyring_of(server: Server) -> KeyRing:
    """The server's keys, built on first use and again when ``[server]`` was replaced (``--api-key``, tests)."""
    ring: KeyRing | None = getattr(server, "keyring", None)
    settings = server.settings.server
    if ring is None or not ring.current(settings):
        ring = KeyRing(settings, _base(server), ring)
        server.keyring = ring  # type: ignore[attr-defined]
    return ring


def reload_keys(server: Server) -> KeyRing:
    """Read ``api_key_file`` again (``POST /v1/admin/reload``); the windows of names that stay are kept."""
    ring = KeyRing(server.settings.server, _base(server), getattr(server, "keyring", None))
    server.keyring = ring  # type: ignore[attr-defined]
    return ring


def observe_tokens(count: int, on_record: Callable[[str, int], None] | None = None) -> None:
    """Charge ``count`` tokens to the current request's key (for its ``tpm``), and report them by name."""
    key = CURRENT_KEY.get()
    if key is None:
        return
    key.record_tokens(count)
    if on_record is not None:
        on_record(key.name, count)
