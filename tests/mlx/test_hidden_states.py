"""``/v1/hidden_states``: the output of a chosen decoder layer, as floats or base64 float32."""

from __future__ import annotations

import base64

import httpx
import numpy as np
import pytest

from heylook_core.testing import ServerProcess

pytestmark = pytest.mark.slow

HIDDEN = 64
LAYERS = 2


def states(server: ServerProcess, **body) -> dict:
    response = httpx.post(server.base_url + "/hidden_states", json={"model": "tiny"} | body, timeout=60)
    assert response.status_code == 200, response.text
    return response.json()


def tokens(server: ServerProcess, text: str) -> int:
    return httpx.post(server.base_url + "/tokenize", json={"model": "tiny", "input": text}).json()["count"]


def test_shapes_per_layer(server: ServerProcess) -> None:
    inputs = ["hello world", "The quick brown fox jumps over the lazy dog."]
    counts = [tokens(server, text) for text in inputs]
    outputs = {}
    for layer in (0, 1, -1, -2):
        result = states(server, input=inputs, layer=layer)
        assert result["layer"] == layer % LAYERS
        assert result["shape"] == [[count, HIDDEN] for count in counts]
        outputs[layer] = [np.array(item, dtype=np.float32) for item in result["hidden_states"]]
    np.testing.assert_array_equal(outputs[-1][0], outputs[1][0])
    np.testing.assert_array_equal(outputs[-2][1], outputs[0][1])
    assert not np.allclose(outputs[0][0], outputs[1][0])


def test_base64_matches_float(server: ServerProcess) -> None:
    as_float = states(server, input="hello world", layer=0)
    as_base64 = states(server, input="hello world", layer=0, encoding_format="base64")
    decoded = np.frombuffer(base64.b64decode(as_base64["hidden_states"][0]), dtype="<f4")
    np.testing.assert_allclose(
        decoded.reshape(as_base64["shape"][0]), np.array(as_float["hidden_states"][0]), rtol=1e-6
    )


def test_chat_template_and_max_length(server: ServerProcess) -> None:
    raw = states(server, input="hello", layer=0)
    templated = states(server, input="hello", layer=0, apply_chat_template=True)
    assert templated["shape"][0][0] > raw["shape"][0][0]
    cut = states(server, input="The quick brown fox jumps over the lazy dog.", layer=0, max_length=3)
    assert cut["shape"] == [[3, HIDDEN]]


def test_layer_default_and_range(server: ServerProcess) -> None:
    assert states(server, input="hi")["layer"] == 0  # -2 of two layers
    assert states(server, model="tiny-nocache", input="hi")["layer"] == 0  # hidden_layer_default = 0
    response = httpx.post(server.base_url + "/hidden_states", json={"model": "tiny", "input": "hi", "layer": 2})
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "layer"
