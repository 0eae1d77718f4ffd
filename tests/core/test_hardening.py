"""Hardening (issue 12): protocol details, optional dependencies and plugin faults, against the echo provider."""

from __future__ import annotations

import sys
import types
from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient

from heylook_core import Capability, ProviderSpec, hookimpl

WAV = b"RIFF\x24\x00\x00\x00WAVEfmt "  # a header only: what matters is that no decoder is reached


@pytest.fixture
def no_pyav(monkeypatch: pytest.MonkeyPatch) -> None:
    """The core installed without the ``audio`` extra."""
    monkeypatch.setitem(sys.modules, "av", None)  # ``import av`` raises ImportError


@pytest.mark.parametrize("route", ["/v1/audio/transcriptions", "/v1/audio/translations"])
def test_audio_without_pyav_is_a_501_naming_the_extra(client: TestClient, no_pyav: None, route: str) -> None:
    response = client.post(route, files={"file": ("a.wav", WAV)}, data={"model": "echo-small"})
    assert response.status_code == 501, response.text
    error = response.json()["error"]
    assert error["code"] == "audio_decoder_missing"
    assert "pip install 'heylook-core[audio]'" in error["message"]


def _chat_only_plugin() -> types.ModuleType:
    from heylook_echo.provider import EchoProvider

    module = types.ModuleType("chat_only_plugin")

    @hookimpl
    def register_providers(register: Callable[[ProviderSpec], None]) -> None:
        register(
            ProviderSpec(name="chat_only", factory=lambda: EchoProvider, capabilities=frozenset({Capability.CHAT}))
        )

    module.register_providers = register_providers  # type: ignore[attr-defined]
    return module


def test_audio_capability_is_checked_before_the_decoder(make_client: Callable[..., TestClient], no_pyav: None) -> None:
    client = make_client(
        '[[models]]\nid = "chatty"\nprovider = "chat_only"\n', plugins=[("chat_only", _chat_only_plugin())]
    )
    response = client.post("/v1/audio/transcriptions", files={"file": ("a.wav", WAV)}, data={"model": "chatty"})
    assert response.status_code == 400, response.text
    assert "does not support audio transcription" in response.json()["error"]["message"]


@pytest.mark.parametrize("route", ["/v1/audio/transcriptions", "/v1/audio/translations"])
def test_audio_model_name_too_long_is_a_400(client: TestClient, route: str) -> None:
    response = client.post(route, files={"file": ("a.wav", WAV)}, data={"model": "x" * 300})
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == "model"
