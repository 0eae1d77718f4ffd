"""/metrics after real requests, read with prometheus-client's own parser: tokens, TTFT, time per output token and
duration by model, queue and running gauges, loads, load time and evictions, failed plugins."""

from __future__ import annotations

from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from heylook_core.testing import serve

CONFIG = """\
max_loaded_models = 1
[[models]]
id = "a"
provider = "echo"
[models.config]
token_delay_ms = 5
[[models]]
id = "b"
provider = "echo"
"""


def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = httpx.get(url + "/metrics").text
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_tokens_latency_and_loads_after_a_chat(tmp_path: Path) -> None:
    config = tmp_path / "models.toml"
    config.write_text(CONFIG)
    with serve(config) as server:
        body = {"model": "a", "messages": [{"role": "user", "content": "one two three"}], "max_tokens": 8}
        reply = httpx.post(server.base_url + "/chat/completions", json=body, timeout=30).json()
        usage = reply["usage"]
        with httpx.stream(
            "POST",
            server.base_url + "/chat/completions",
            json={**body, "stream": True, "stream_options": {"include_usage": True}},
            timeout=30,
        ) as stream:
            assert stream.status_code == 200
            for _ in stream.iter_lines():
                pass
        httpx.post(server.base_url + "/chat/completions", json={**body, "model": "b"}, timeout=30)  # evicts "a"
        samples = scrape(server.url)
    assert value(samples, "heylook_prompt_tokens_total", model="a") == 2 * usage["prompt_tokens"]
    assert value(samples, "heylook_generated_tokens_total", model="a") == 2 * usage["completion_tokens"]
    assert value(samples, "heylook_generations_total", model="a", outcome="length") == 2
    assert value(samples, "heylook_time_to_first_token_seconds_count", model="a") == 2
    assert value(samples, "heylook_time_to_first_token_seconds_sum", model="a") > 0
    assert value(samples, "heylook_time_to_first_token_seconds_bucket", model="a", le="+Inf") == 2
    assert value(samples, "heylook_time_per_output_token_seconds_count", model="a") == 2
    assert value(samples, "heylook_time_per_output_token_seconds_sum", model="a") >= 2 * 0.004
    assert value(samples, "heylook_generation_duration_seconds_count", model="b") == 1
    assert value(samples, "heylook_model_loads_total", model="a") == 1
    assert value(samples, "heylook_model_loads_total", model="b") == 1
    assert value(samples, "heylook_model_load_seconds_count", model="b") == 1
    assert value(samples, "heylook_model_evictions_total", model="a") == 1
    assert value(samples, "heylook_model_loaded", model="b") == 1
    assert ("heylook_model_queue_depth", (("model", "a"),)) in samples
    assert value(samples, "heylook_model_running", model="b") == 0
    # labels are bounded: a model name a client made up appears nowhere
    assert not any(dict(labels).get("model") == "made-up" for _, labels in samples)


def test_an_unknown_model_adds_no_label(tmp_path: Path) -> None:
    config = tmp_path / "models.toml"
    config.write_text(CONFIG)
    with serve(config) as server:
        body = {"model": "made-up", "messages": [{"role": "user", "content": "x"}]}
        assert httpx.post(server.base_url + "/chat/completions", json=body, timeout=30).status_code == 404
        samples = scrape(server.url)
    assert {dict(labels).get("model") for _, labels in samples} <= {None, "a", "b"}
