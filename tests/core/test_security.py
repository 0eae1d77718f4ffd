"""Security checks (issue 18): Host / Origin / content type, /metrics labels, keys, open routes, bad input."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from heylook_core.config import load_settings
from heylook_core.errors import ConfigError
from heylook_core.plugins import PluginHost
from heylook_core.testing import free_port, heylookllm_command, serve
from tests.core.conftest import EXAMPLE, user

CHAT = {"model": "echo-small", "messages": user("x"), "max_tokens": 2}


def assert_error(response: Any, status: int, code: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}
    if code is not None:
        assert body["error"]["code"] == code, body
    return body["error"]


# -- 1. Host, Origin and content type ------------------------------------------------------------------------------


def test_foreign_host_is_403_and_loopback_forms_are_served(make_client: Any) -> None:
    client = make_client()
    for host in ("attacker.rebind.example", "attacker.rebind.example:8080", "127.0.0.1.nip.io", "10.0.0.5", ""):
        error = assert_error(client.get("/v1/models", headers={"Host": host}), 403, code="host_not_allowed")
        assert error["type"] == "permission_error"
    assert_error(client.get("/health", headers={"Host": "evil.example"}), 403)
    for host in ("localhost", "LOCALHOST:8080", "127.0.0.1:9", "127.1.2.3", "[::1]:8080", "[::ffff:127.0.0.1]"):
        assert client.get("/v1/models", headers={"Host": host}).status_code == 200, host


def test_allowed_hosts_and_the_bind_address(make_client: Any) -> None:
    client = make_client(EXAMPLE + '[server]\nallowed_hosts = ["box.lan", ".example.net"]\n')
    for host in ("box.lan", "box.lan:8080", "a.example.net", "BOX.LAN"):
        assert client.get("/v1/models", headers={"Host": host}).status_code == 200, host
    for host in ("other.lan", "example.net.evil.com", "xbox.lan"):
        assert_error(client.get("/v1/models", headers={"Host": host}), 403)

    client = make_client(EXAMPLE + '[server]\nhost = "192.168.5.5"\n')
    assert client.get("/v1/models", headers={"Host": "192.168.5.5:8080"}).status_code == 200
    assert_error(client.get("/v1/models", headers={"Host": "192.168.5.6"}), 403)

    client = make_client(EXAMPLE + '[server]\nhost = "0.0.0.0"\n')  # any address literal; names still refused
    assert client.get("/v1/models", headers={"Host": "192.168.5.6:8080"}).status_code == 200
    assert_error(client.get("/v1/models", headers={"Host": "rebind.example"}), 403)

    client = make_client(EXAMPLE + '[server]\nallowed_hosts = ["*"]\n')  # the explicit opt-out
    assert client.get("/v1/models", headers={"Host": "attacker.rebind.example"}).status_code == 200


def test_foreign_origin_is_403_on_state_changing_routes(make_client: Any) -> None:
    client = make_client()
    evil = {"Origin": "http://evil.example"}
    for content_type in ("text/plain", "application/json", "application/x-www-form-urlencoded"):
        response = client.post(
            "/v1/chat/completions", content=json.dumps(CHAT), headers={**evil, "Content-Type": content_type}
        )
        assert_error(response, 403, code="origin_not_allowed")
    assert_error(client.post("/v1/tokenize", json={"input": "a"}, headers={"Origin": "null"}), 403)
    assert_error(client.delete("/v1/models/echo-small", headers=evil), 403)
    assert_error(client.put("/v1/models/echo-small", headers=evil), 403)
    files = {"file": ("a.wav", b"RIFF", "audio/wav")}
    assert_error(client.post("/v1/audio/transcriptions", files=files, data={"model": "x"}, headers=evil), 403)
    # reads are not state-changing; CORS keeps their answers from a foreign page
    assert client.get("/v1/models", headers=evil).status_code == 200


def test_own_and_listed_origins_need_a_json_content_type(make_client: Any) -> None:
    client = make_client(EXAMPLE + '[server]\ncors_origins = ["http://app.example"]\n')
    for origin in ("http://127.0.0.1", "http://app.example"):
        response = client.post("/v1/chat/completions", json=CHAT, headers={"Origin": origin})
        assert response.status_code == 200, (origin, response.text)
        response = client.post(
            "/v1/chat/completions", content=json.dumps(CHAT), headers={"Origin": origin, "Content-Type": "text/plain"}
        )
        assert_error(response, 415, code="unsupported_media_type")
    listed = client.post("/v1/chat/completions", json=CHAT, headers={"Origin": "http://app.example"})
    assert listed.headers["access-control-allow-origin"] == "http://app.example"
    own = client.post("/v1/chat/completions", json=CHAT, headers={"Origin": "http://127.0.0.1:9999"})
    assert_error(own, 403)  # another port is another origin
    # without an Origin (curl -d, SDKs) any content type is read as JSON
    plain = client.post("/v1/chat/completions", content=json.dumps(CHAT), headers={"Content-Type": "text/plain"})
    assert plain.status_code == 200


def test_cross_site_requests_against_a_real_server(tmp_path: Path) -> None:
    config = tmp_path / "models.toml"
    config.write_text(EXAMPLE)
    with serve(config, env={"HEYLOOK_LOAD_PLUGINS": "echo"}) as server:
        url = server.base_url + "/chat/completions"
        body = json.dumps(CHAT)
        simple = {"Origin": "http://evil.example", "Content-Type": "text/plain"}
        assert_error(httpx.post(url, content=body, headers=simple), 403, code="origin_not_allowed")
        assert_error(httpx.get(server.base_url + "/models", headers={"Host": "attacker.rebind.example"}), 403)
        form = {"Content-Type": "application/x-www-form-urlencoded"}  # curl -d
        assert httpx.post(url, content=body, headers=form).status_code == 200
        assert httpx.post(url, content=body, headers={"Origin": server.url, **form}).status_code == 415
        assert httpx.post(url, json=CHAT, headers={"Origin": server.url}).status_code == 200
        streamed = httpx.post(url, json={**CHAT, "stream": True}, headers={"Origin": server.url})
        assert streamed.status_code == 200 and streamed.text.rstrip().endswith("data: [DONE]")


# -- 2. /metrics ---------------------------------------------------------------------------------------------------

FORGED = "/v1/x%22,status=%22200%22%7D%209999%0Aheylook_model_loaded%7Bmodel=%22pwned%22%7D%201%0A%23"


def _families(text: str) -> dict[str, Any]:
    return {family.name: family for family in text_string_to_metric_families(text)}


def test_metrics_labels_are_route_templates_and_bounded(tmp_path: Path) -> None:
    config = tmp_path / "models.toml"
    config.write_text(EXAMPLE)
    with serve(config, env={"HEYLOOK_LOAD_PLUGINS": "echo"}) as server:
        with httpx.Client(base_url=server.url) as client:
            assert client.get(FORGED).status_code == 404
            assert client.post("/v1/chat/completions", json=CHAT).status_code == 200
            assert client.get("/v1/models/echo-small").status_code == 200
            for i in range(10):
                client.get(f"/v1/nothing-{i}")
                client.request(f"M{i}", "/v1/models")
            client.get("/metrics")  # so that the scrape itself is counted in both texts
            before = client.get("/metrics").text
            for i in range(10, 150):
                client.get(f"/v1/nothing-{i}")
                client.get(f"/other/{i}%22")
                client.request(f"M{i}", "/v1/models")
            after = client.get("/metrics")
    text = after.text
    assert "pwned" not in text
    families = _families(text)
    samples = [sample for family in families.values() for sample in family.samples]
    assert not any(sample.labels.get("model") == "pwned" for sample in samples)
    assert {s.labels["model"] for s in families["heylook_model_loaded"].samples} == {"echo-small"}
    paths = {s.labels["path"] for s in families["heylook_requests"].samples}
    routes = {"/v1/chat/completions", "/v1/models", "/v1/models/{model_id:path}", "/metrics", "/health"}
    assert paths <= {"unmatched", *routes}
    assert {"unmatched", "/v1/chat/completions", "/v1/models/{model_id:path}"} <= paths
    methods = {s.labels["method"] for s in families["heylook_requests"].samples}
    assert methods <= {"GET", "POST", "other"}
    assert after.headers["content-type"].startswith("text/plain; version=")  # the exposition library's own
    # 290 more distinct paths and methods add no line: the size depends on the routes, not on the clients
    assert len(text.splitlines()) == len(before.splitlines())
    unmatched = [
        s
        for s in families["heylook_requests"].samples
        if s.name == "heylook_requests_total" and s.labels["path"] == "unmatched" and s.labels["status"] == "404"
    ]
    assert sum(s.value for s in unmatched) == 1 + 150 + 140


def test_metrics_of_two_servers_in_one_process_are_separate(make_client: Any) -> None:
    first, second = make_client(), make_client()
    first.post("/v1/chat/completions", json=CHAT)
    for client, expected in ((first, 1), (second, 0)):
        families = _families(client.get("/metrics").text)
        chats = [
            s.value
            for s in families["heylook_requests"].samples
            if s.name == "heylook_requests_total" and s.labels["path"] == "/v1/chat/completions"
        ]
        assert sum(chats) == expected


# -- 3. API keys ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [" ", ",", " , ", "k1,,k2", "k1,"])
def test_blank_environment_keys_are_a_startup_error(
    value: str, write_config: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HEYLOOK_API_KEY", value)
    host = PluginHost().load()
    with pytest.raises(ConfigError, match="HEYLOOK_API_KEY holds a blank API key"):
        load_settings(host.providers, host.offered_models, config_path=write_config(EXAMPLE))


@pytest.mark.parametrize("keys", ['[""]', '["k1", " "]'])
def test_blank_configured_keys_are_a_startup_error(keys: str, write_config: Any) -> None:
    host = PluginHost().load()
    path = write_config(EXAMPLE + f"[server]\napi_keys = {keys}\n")
    with pytest.raises(ConfigError, match="blank key"):
        load_settings(host.providers, host.offered_models, config_path=path)
    with pytest.raises(ConfigError, match="admin_key is blank"):
        load_settings(host.providers, host.offered_models, config_path=write_config('[server]\nadmin_key = " "\n'))


def test_serve_refuses_blank_keys_and_logs_whether_keys_are_required(tmp_path: Path) -> None:
    config = tmp_path / "models.toml"
    config.write_text(EXAMPLE + '[server]\napi_keys = ["from-file"]\n')
    environment = {**os.environ, "HEYLOOK_LOAD_PLUGINS": "echo", "HEYLOOK_API_KEY": " "}
    command = [*heylookllm_command(), "serve", "--config", str(config), "--port", str(free_port())]
    result = subprocess.run(command, capture_output=True, text=True, env=environment, timeout=60)
    assert result.returncode == 2 and "HEYLOOK_API_KEY holds a blank API key" in result.stderr
    del environment["HEYLOOK_API_KEY"]
    result = subprocess.run([*command, "--api-key", ","], capture_output=True, text=True, env=environment, timeout=60)
    assert result.returncode == 2 and "--api-key holds a blank API key" in result.stderr

    with serve(config, env={"HEYLOOK_LOAD_PLUGINS": "echo", "HEYLOOK_API_KEY": "from-env"}) as server:
        assert httpx.get(server.base_url + "/models").status_code == 401
        keyed = httpx.get(server.base_url + "/models", headers={"Authorization": "Bearer from-env"})
        assert keyed.status_code == 200
        assert httpx.get(server.base_url + "/models", headers={"Authorization": "Bearer from-file"}).status_code == 401
        log = server.log()
    assert "HEYLOOK_API_KEY replaces the 1 API key(s) of [server] api_keys" in log
    assert "API keys required" in log

    open_config = tmp_path / "open.toml"
    open_config.write_text(EXAMPLE)
    with serve(open_config, env={"HEYLOOK_LOAD_PLUGINS": "echo"}) as server:
        log = server.log()
    assert "no API key required" in log


# -- 4. Routes that need a key when keys are required --------------------------------------------------------------


def test_operations_routes_need_a_key_when_keys_are_required(make_client: Any) -> None:
    client = make_client(EXAMPLE + '[server]\napi_keys = ["k1"]\n')
    key = {"Authorization": "Bearer k1"}
    for path in ("/-/plugins", "/metrics"):
        assert_error(client.get(path), 401, code="missing_api_key")
        assert_error(client.get(path, headers={"Authorization": "Bearer nope"}), 401)
        assert client.get(path, headers=key).status_code == 200
    health = client.get("/health")
    assert health.status_code == 200 and health.json() == {"status": "ok"}  # open, and minimal

    client = make_client()  # without keys nothing changes
    assert client.get("/-/plugins").status_code == 200 and client.get("/metrics").status_code == 200
    assert client.get("/health").json()["models"] == ["echo-small"]


# -- 5. Bad input --------------------------------------------------------------------------------------------------

TOOLS = [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}]


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize(
    "choice",
    [
        {"type": "function", "function": "notadict"},
        {"type": "function"},
        {"type": "function", "function": {}},
        {"type": "function", "function": {"name": 5}},
        {"type": "tool", "function": {"name": "lookup"}},
        {"type": "function", "function": {"name": "lookup", "extra": 1}},
        {"type": "function", "function": {"name": "other"}},
        "sometimes",
    ],
)
def test_bad_tool_choice_is_400(make_client: Any, choice: Any, stream: bool) -> None:
    client = make_client()
    body = {"messages": user("find x"), "tools": TOOLS, "tool_choice": choice, "stream": stream}
    error = assert_error(client.post("/v1/chat/completions", json=body), 400)
    assert error["type"] == "invalid_request_error"


def test_named_tool_choice_still_works(make_client: Any) -> None:
    client = make_client()
    choice = {"type": "function", "function": {"name": "lookup"}}
    body = {"messages": user("find x"), "tools": TOOLS, "tool_choice": choice}
    reply = client.post("/v1/chat/completions", json=body)
    assert reply.status_code == 200, reply.text
    assert reply.json()["choices"][0]["message"]["tool_calls"][0]["function"]["name"] == "lookup"


@pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity"])
@pytest.mark.parametrize(
    "template",
    [
        '{"messages": [{"role": "user", "content": "x"}], "repetition_penalty": %s}',
        '{"messages": [{"role": "user", "content": "x"}], "temperature": %s}',
        '{"messages": [{"role": "user", "content": "x"}], "top_p": %s}',
        '{"messages": [{"role": "user", "content": "x"}], "presence_penalty": %s}',
        '{"messages": [{"role": "user", "content": "x"}], "logit_bias": {"5": %s}}',
        '{"messages": [{"role": "user", "content": "x"}], "mirostat_tau": %s}',
        '{"prompt": "x", "repetition_penalty": %s}',
    ],
)
def test_non_finite_numbers_are_400(make_client: Any, template: str, value: str) -> None:
    client = make_client()
    path = "/v1/completions" if '"prompt"' in template else "/v1/chat/completions"
    response = client.post(path, content=template % value, headers={"Content-Type": "application/json"})
    assert_error(response, 400)


def test_model_name_is_capped_and_never_echoed_whole(make_client: Any) -> None:
    client = make_client()
    huge = "m" * 1_000_000
    response = client.post("/v1/chat/completions", json={"model": huge, "messages": user("x")})
    error = assert_error(response, 400)
    assert error["param"] == "model" and len(response.content) < 1000
    long = "q" * 200  # under the cap: an unknown model, named by a prefix only
    for response in (
        client.post("/v1/chat/completions", json={"model": long, "messages": user("x")}),
        client.get("/v1/models/" + "z" * 5000),
    ):
        error = assert_error(response, 404, code="model_not_found")
        assert len(error["message"]) < 200 and "echo-small" in error["message"]
