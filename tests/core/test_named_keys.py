"""Named API keys with rpm / tpm limits (429 with Retry-After), a key file re-read on admin reload, and the key's
name (never the key) as a metrics label."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from heylook_core.app import create_app
from heylook_core.config import load_settings
from heylook_core.errors import ConfigError
from heylook_core.plugins import PluginHost
from heylook_core.server import build_server
from heylook_core.testing import serve

ALICE, BOB, CAROL, DAVE, PLAIN = (f"sk-{n}-0123456789" for n in ("alice", "bob", "carol", "dave", "plain"))
CONFIG = f"""\
[server]
admin_key = "root"
api_key_file = "keys.txt"
api_keys = [
  "{PLAIN}",
  {{name = "alice", key = "{ALICE}", rpm = 2}},
  {{name = "bob", key = "{BOB}", tpm = 10}},
]
[[models]]
id = "echo"
provider = "echo"
"""


def _chat(url: str, key: str, **extra: object) -> httpx.Response:
    body = {"model": "echo", "messages": [{"role": "user", "content": "one two three four"}], **extra}
    return httpx.post(url + "/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {key}"}, timeout=30)


def _samples(url: str, key: str) -> dict[tuple[str, str], float]:
    text = httpx.get(url + "/metrics", headers={"x-api-key": key}).text
    for secret in (ALICE, BOB, CAROL, DAVE, PLAIN):
        assert secret not in text
    return {
        (sample.name, sample.labels.get("key", "")): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if family.name.startswith("heylook_api_key")
    }


def test_limits_names_and_the_key_file(tmp_path: Path) -> None:
    config = tmp_path / "models.toml"
    config.write_text(CONFIG)
    (tmp_path / "keys.txt").write_text(f"# name:key\ncarol:{CAROL}\n\n")
    with serve(config) as server:
        assert _chat(server.url, "wrong").status_code == 401
        assert _chat(server.url, PLAIN).status_code == 200
        assert _chat(server.url, ALICE).status_code == 200
        assert _chat(server.url, ALICE).status_code == 200
        limited = _chat(server.url, ALICE)
        assert limited.status_code == 429
        assert limited.json()["error"]["code"] == "rate_limit_rpm"
        assert 1 <= int(limited.headers["retry-after"]) <= 60
        first = _chat(server.url, BOB, max_tokens=8)
        assert first.status_code == 200
        assert first.json()["usage"]["total_tokens"] >= 10
        over = _chat(server.url, BOB)
        assert over.status_code == 429 and over.json()["error"]["code"] == "rate_limit_tpm"
        assert 1 <= int(over.headers["retry-after"]) <= 60
        assert _chat(server.url, CAROL).status_code == 200
        samples = _samples(server.url, CAROL)
        assert samples[("heylook_api_key_requests_total", "alice")] == 2
        assert samples[("heylook_api_key_rate_limited_total", "alice")] == 1
        assert samples[("heylook_api_key_rate_limited_total", "bob")] == 1
        assert samples[("heylook_api_key_tokens_total", "bob")] == first.json()["usage"]["total_tokens"]
        assert samples[("heylook_api_key_requests_total", "key-1")] == 1  # a plain key is named by position
        assert samples[("heylook_api_key_requests_total", "carol")] == 2  # the chat and this scrape

        (tmp_path / "keys.txt").write_text(f"dave:{DAVE}\n")
        reload = httpx.post(server.url + "/v1/admin/reload", headers={"Authorization": "Bearer root"})
        assert reload.status_code == 200, reload.text
        assert _chat(server.url, CAROL).status_code == 401
        assert _chat(server.url, DAVE).status_code == 200
        assert _chat(server.url, ALICE).status_code == 429  # alice's window survived the reload
        (tmp_path / "keys.txt").write_text("no colon here\n")
        broken = httpx.post(server.url + "/v1/admin/reload", headers={"Authorization": "Bearer root"})
        assert broken.status_code == 400 and "expected 'name:key'" in broken.text
        assert _chat(server.url, DAVE).status_code == 200  # the keys in use stay
        log = server.log()
    assert "API key 'alice' is over its limit" in log
    for secret in (ALICE, BOB, CAROL, DAVE, PLAIN):
        assert secret not in log


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        ('[{name = "a", key = " "}]', "blank"),
        ('[{name = "a", key = "k1"}, {name = "a", key = "k2"}]', "name twice"),
        ('[{name = "a", key = "k1", rpm = 0}]', "greater than or equal to 1"),
        ('[{name = "a", key = "k1", color = "red"}]', "unknown key"),
        ('["k1", " "]', "blank key"),
    ],
)
def test_bad_named_keys_are_startup_errors(keys: str, message: str, tmp_path: Path) -> None:
    path = tmp_path / "models.toml"
    path.write_text(f'[server]\napi_keys = {keys}\n[[models]]\nid = "echo"\nprovider = "echo"\n')
    host = PluginHost().load()
    with pytest.raises(ConfigError, match=message):
        load_settings(host.providers, host.offered_models, config_path=path)


def test_a_broken_key_file_stops_the_server(tmp_path: Path) -> None:
    path = tmp_path / "models.toml"
    path.write_text('[server]\napi_key_file = "keys.txt"\n[[models]]\nid = "echo"\nprovider = "echo"\n')
    with pytest.raises(ConfigError, match="cannot read it"):
        create_app(build_server(path))
    (tmp_path / "keys.txt").write_text("a:k1\na:k2\n")
    with pytest.raises(ConfigError, match="used twice"):
        create_app(build_server(path))
