"""The conformance suite finds what it is for: a provider with known flaws fails the checks for those flaws, while
the echo provider on the same server passes them.

The flawed provider is a plugin made at test time (a module and its dist-info on the server's PYTHONPATH): it writes
a second finish, one token past ``max_tokens``, changes its text when ``top_k`` is set, ignores ``seed``, and keeps
generating after the client has gone (holding its engine, so the next request waits).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

FLAWED = """
import queue
import random
import threading
import time

from heylook_core import Capability, Delta, ParameterGroup, ProviderSpec, Usage, hookimpl
from heylook_echo.config import EchoConfig
from heylook_echo.provider import EchoProvider

ENGINE = threading.Lock()  # one engine: a generation that runs on keeps the next one waiting


class Flawed(EchoProvider):
    def chat_sync(self, request, cancel):
        items = queue.Queue()
        limit = (request.max_tokens or 16) + 1  # flaw: one token too many
        first = " k" if request.top_k else ""  # flaw: top_k changes a greedy text
        if request.temperature:  # flaw: sampled text that ignores the seed
            first += random.choice([" a", " b", " c", " d", " e", " f", " g", " h"]) * 3

        def run():  # flaw: ignores cancel, and the engine runs on after the client went away
            with ENGINE:
                for index in range(limit):
                    time.sleep(0.005)
                    items.put(Delta(text=(first if index == 0 else "") + f" {index}"))
                last = Delta(finish_reason="length", usage=Usage(10, limit))
                items.put(last)
                items.put(Delta(finish_reason="length", usage=Usage(10, limit)))  # flaw: a second finish
                items.put(None)

        threading.Thread(target=run, daemon=True).start()
        while (item := items.get()) is not None:
            yield item


@hookimpl
def register_providers(register):
    register(
        ProviderSpec(
            name="flawed",
            factory=lambda: Flawed,
            config_schema=EchoConfig,
            capabilities=frozenset({Capability.CHAT}),
            parameters=ParameterGroup.GENERATION,
        )
    )
"""

CONFIG = """\
max_loaded_models = 2

[[models]]
id = "echo"
provider = "echo"
[models.config]
token_delay_ms = 5

[[models]]
id = "flawed"
provider = "flawed"
"""

CHECKS = "test_stream_framing or test_max_tokens or top_k or test_seed or test_cancellation"
# What the suite must say about each flaw.
EXPECTED = {
    "test_stream_framing[flawed-chat]": "2 chunks carry a finish_reason",
    "test_max_tokens[flawed-chat-whole]": "'completion_tokens': 4",
    "test_max_tokens[flawed-chat-stream]": "'completion_tokens': 4",
    "test_parameter[flawed-top_k]": "changed the greedy text",
    "test_seed[flawed]": "seed 1234 gave",
    "test_cancellation[flawed]": "kept the engine busy",
}


def test_the_suite_fails_a_flawed_provider_and_passes_echo(tmp_path: Path) -> None:
    site = tmp_path / "site"
    (site / "heylook_flawed-0.1.dist-info").mkdir(parents=True)
    (site / "heylook_flawed.py").write_text(FLAWED, encoding="utf-8")
    (site / "heylook_flawed-0.1.dist-info" / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: heylook-flawed\nVersion: 0.1\n", encoding="utf-8"
    )
    (site / "heylook_flawed-0.1.dist-info" / "entry_points.txt").write_text(
        "[heylook]\nflawed = heylook_flawed\n", encoding="utf-8"
    )
    config = tmp_path / "models.toml"
    config.write_text(CONFIG, encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(site), "HEYLOOK_LOAD_PLUGINS": "echo,flawed"}
    command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rA", "--heylook-conformance"]
    command += ["--heylook-config", str(config), "-k", CHECKS, "-o", "addopts="]
    run = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    output = run.stdout + run.stderr
    failed = set(re.findall(r"^FAILED \S*::TestConformance::(\S+)", output, re.MULTILINE))
    passed = set(re.findall(r"^PASSED \S*::TestConformance::(\S+)", output, re.MULTILINE))
    assert failed == set(EXPECTED), output[-4000:]
    for check, message in EXPECTED.items():
        assert message in output, f"{check}: the failure does not say {message!r}\n{output[-4000:]}"
    echo = {name for name in passed if "[echo" in name}
    assert {"test_stream_framing[echo-chat]", "test_seed[echo]", "test_cancellation[echo]"} <= echo, output[-4000:]
    assert not any("[echo" in name for name in failed)
