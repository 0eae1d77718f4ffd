"""Remote mode: heylook fronts llama-servers it did not start, skipping the ones that are down."""

from __future__ import annotations

import contextlib
from pathlib import Path

import httpx
import openai
import pytest

from heylook_core.testing import free_port, serve

from .conftest import children_named, direct_server, model_card

pytestmark = pytest.mark.slow
ENV = {"HEYLOOK_LOAD_PLUGINS": "llama_server"}


def remote_model(model_id: str, urls: list[str], parallel: int = 1) -> str:
    listed = ", ".join(f'"{u}"' for u in urls)
    key = f"url = {listed}" if len(urls) == 1 else f"urls = [{listed}]"
    return f"""
[[models]]
id = "{model_id}"
provider = "llama_server"
[models.config]
{key}
parallel = {parallel}
health_interval_s = 0.5
"""


def test_remote_url(write_config, binary: Path, gemma: Path) -> None:
    with direct_server(binary, gemma) as upstream:
        config = write_config(remote_model("far", [upstream]))
        with serve(config, env=ENV, timeout=60) as server:
            client = openai.OpenAI(base_url=server.base_url, api_key="unused", max_retries=0, timeout=120)
            reply = client.chat.completions.create(
                model="far", messages=[{"role": "user", "content": "Hi"}], max_tokens=6, temperature=0
            )
            direct = httpx.post(
                upstream + "/v1/chat/completions",
                timeout=60,
                json={"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 6, "temperature": 0},
            ).json()
            assert reply.choices[0].message.content == direct["choices"][0]["message"]["content"]
            stream = client.chat.completions.create(
                model="far", messages=[{"role": "user", "content": "Hi"}], max_tokens=6, temperature=0, stream=True
            )
            assert (
                "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
                == direct["choices"][0]["message"]["content"]
            )
            card = model_card(server.base_url, "far")
            assert card["upstreams"][0]["url"] == upstream and card["upstreams"][0]["served"] == 2
            assert children_named(server.process.pid) == []  # remote mode starts no process


def test_down_upstream_is_skipped_and_reported(write_config, binary: Path, gemma: Path) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    with direct_server(binary, gemma, parallel=2) as live:
        config = write_config(remote_model("fleet", [dead, live], parallel=2))
        with serve(config, env=ENV, timeout=60) as server:
            client = openai.OpenAI(base_url=server.base_url, api_key="unused", max_retries=0, timeout=120)
            for _ in range(4):
                reply = client.chat.completions.create(
                    model="fleet", messages=[{"role": "user", "content": "Hi"}], max_tokens=4
                )
                assert reply.choices[0].message.content
            upstreams = {u["url"]: u for u in model_card(server.base_url, "fleet")["upstreams"]}
            assert upstreams[dead]["healthy"] is False and upstreams[dead]["last_error"]
            assert upstreams[dead]["served"] == 0
            assert upstreams[live]["healthy"] is True and upstreams[live]["served"] == 4
            assert "is down" in server.log()


def test_all_upstreams_down_is_a_load_error(write_config) -> None:
    dead = [f"http://127.0.0.1:{free_port()}", f"http://127.0.0.1:{free_port()}"]
    config = write_config(remote_model("nowhere", dead))
    with serve(config, env=ENV, timeout=60) as server:
        response = httpx.post(
            server.base_url + "/chat/completions",
            timeout=60,
            json={"model": "nowhere", "messages": [{"role": "user", "content": "Hi"}]},
        )
        assert response.status_code == 503
        message = response.json()["error"]["message"]
        assert "'nowhere'" in message and dead[0] not in message  # the upstreams are named in the log only
        log = server.log()
        assert dead[0] in log and dead[1] in log


def test_upstream_that_goes_down_is_skipped(write_config, binary: Path, gemma: Path) -> None:
    with direct_server(binary, gemma) as steady, contextlib.ExitStack() as stack:
        leaving = stack.enter_context(direct_server(binary, gemma))
        config = write_config(remote_model("pair", [leaving, steady]))
        with serve(config, env=ENV, timeout=60) as server:
            client = openai.OpenAI(base_url=server.base_url, api_key="unused", max_retries=0, timeout=120)
            hello = [{"role": "user", "content": "Hi"}]
            client.chat.completions.create(model="pair", messages=hello, max_tokens=2)
            stack.close()  # the first upstream stops while heylook fronts it
            for _ in range(4):
                assert client.chat.completions.create(model="pair", messages=hello, max_tokens=2).choices
            upstreams = {u["url"]: u for u in model_card(server.base_url, "pair")["upstreams"]}
            assert upstreams[leaving]["healthy"] is False
            assert upstreams[steady]["served"] >= 4
