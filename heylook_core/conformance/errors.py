"""Checks of errors: each is the right status in OpenAI's shape, and the SDK raises its matching class."""

from __future__ import annotations

import openai
import pytest

from heylook_core.conformance.session import Subject, error_of

# A request per capability, for the check that a model answers what it lacks with a 400.
CAPABILITY_REQUESTS: dict[str, tuple[str, dict[str, object]]] = {
    "chat": ("/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}),
    "completion": ("/v1/completions", {"prompt": "hi", "max_tokens": 2}),
    "embeddings": ("/v1/embeddings", {"input": "hi"}),
    "tokenize": ("/v1/tokenize", {"input": "hi"}),
    "hidden_states": ("/v1/hidden_states", {"input": "hi"}),
}


class ErrorChecks:
    def test_unknown_model(self, heylook: Subject) -> None:
        """An unknown model is a 404 ``model_not_found``, streamed or not; the SDK raises ``NotFoundError``."""
        endpoint = heylook.text_endpoint() if heylook.has("chat") or heylook.has("completion") else "chat"
        path = "/v1/chat/completions" if endpoint == "chat" else "/v1/completions"
        for stream in (False, True):
            body = {**heylook.body(endpoint, {"max_tokens": 2, "stream": stream}), "model": "heylook-no-such-model"}
            response = heylook.post(path, body)
            assert response.status_code == 404, response.text
            error = error_of(response)
            assert error["code"] == "model_not_found", error
            assert error["type"] == "invalid_request_error", error
        with pytest.raises(openai.NotFoundError):
            heylook.served.openai.chat.completions.create(
                model="heylook-no-such-model", messages=[{"role": "user", "content": "hi"}], max_tokens=2
            )

    def test_invalid_values(self, heylook: Subject) -> None:
        """Out-of-range and mistyped values are 400s naming the parameter; a body that is not JSON is a 400."""
        endpoint = heylook.text_endpoint()
        path = "/v1/chat/completions" if endpoint == "chat" else "/v1/completions"
        for params, param in (({"max_tokens": 0}, "max_tokens"), ({"temperature": "hot"}, "temperature")):
            response = heylook.post(path, heylook.body(endpoint, params))
            assert response.status_code == 400, f"{params}: {response.status_code} {response.text[:300]}"
            error = error_of(response)
            assert error["type"] == "invalid_request_error" and error["param"] == param, error
        response = heylook.served.http.post(path, content=b'{"model": ', headers={"Content-Type": "application/json"})
        assert response.status_code == 400, response.text
        error_of(response)
        with pytest.raises(openai.BadRequestError):
            heylook.create(endpoint, {"max_tokens": 0})

    def test_missing_capability(self, heylook: Subject) -> None:
        """What the model does not declare is a 400 naming the model (``param: "model"``), not a 404 or a 500."""
        lacking = [name for name in CAPABILITY_REQUESTS if not heylook.has(name)]
        if not lacking:
            pytest.skip(f"model '{heylook.id}' declares every capability the check covers")
        for name in lacking:
            path, body = CAPABILITY_REQUESTS[name]
            response = heylook.post(path, {"model": heylook.id, **body})
            assert response.status_code == 400, f"{name}: {response.status_code} {response.text[:300]}"
            error = error_of(response)
            assert error["param"] == "model", f"{name}: {error}"
            assert heylook.id in error["message"], f"{name}: the message does not name the model: {error}"

    def test_context_overflow(self, heylook: Subject) -> None:
        """A prompt longer than the declared context is a 400, and the model serves the next request."""
        context = heylook.card.get("context_length")
        if not isinstance(context, int) or context <= 0:
            pytest.skip(f"model '{heylook.id}' declares no context_length on its card")
        endpoint = heylook.text_endpoint()
        words = " ".join(["hello"] * (context + 64))
        prompt = [{"role": "user", "content": words}] if endpoint == "chat" else words
        path = "/v1/chat/completions" if endpoint == "chat" else "/v1/completions"
        response = heylook.post(path, heylook.body(endpoint, {"max_tokens": 2}, prompt))
        assert response.status_code == 400, f"{response.status_code}: {response.text[:300]}"
        assert error_of(response)["type"] == "invalid_request_error"
        result = heylook.generate(endpoint, {**heylook.greedy, "max_tokens": 2})
        assert result.usage is not None and result.usage["completion_tokens"] > 0


__all__ = ["CAPABILITY_REQUESTS", "ErrorChecks"]
