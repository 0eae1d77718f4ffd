"""The OpenAI Agents SDK's default agent (it speaks the Responses API) against `heylookllm serve` (echo)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from agents import Agent, Runner, function_tool, set_default_openai_client, set_tracing_disabled
from openai import AsyncOpenAI

from heylook_core.testing import ServerProcess, serve

CONFIG = """\
default_model = "echo-small"
[[models]]
id = "echo-small"
provider = "echo"
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    root = tmp_path_factory.mktemp("agents")
    (root / "models.toml").write_text(CONFIG)
    with serve(root / "models.toml", env={"HEYLOOK_LOAD_PLUGINS": "echo", "XDG_DATA_HOME": str(root)}) as process:
        yield process


def test_default_agent_runs_a_tool_using_turn(server: ServerProcess, tmp_path: Path) -> None:
    calls: list[str] = []

    @function_tool
    def lookup(text: str) -> str:
        """Look a phrase up."""
        calls.append(text)
        return f"found {len(text.split())} words"

    async def run() -> str:
        client = AsyncOpenAI(base_url=server.base_url, api_key="unused", max_retries=0)
        set_default_openai_client(client, use_for_tracing=False)
        set_tracing_disabled(True)
        agent = Agent(name="helper", instructions="Use the lookup tool.", tools=[lookup], model="echo-small")
        try:
            result = await Runner.run(agent, "what does heylook mean")
            return str(result.final_output)
        finally:
            await client.close()

    final = asyncio.run(run())
    assert calls == ["what does heylook mean"]  # the model's call reached the tool with its arguments
    assert final == "the tool said: found 4 words"  # the tool's result went back and the model answered


def test_the_agents_requests_were_responses_requests(server: ServerProcess) -> None:
    log = server.log()
    assert "Traceback" not in log, log
    assert " ERROR " not in log, log
