"""The provider of docs/plugins.md, built from the page's text alone, installs, serves and passes the conformance
suite: the page is enough to write a provider that works."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import openai
import pytest

from heylook_core.conformance import Target
from heylook_core.conformance.suite import ConformanceSuite
from heylook_core.testing import serve, write_config

ROOT = Path(__file__).resolve().parents[2]
DOCS = (ROOT / "docs" / "plugins.md").read_text(encoding="utf-8")
FILE = re.compile(r"<!-- example: (\S+) -->\n```\w*\n(.*?)```", re.DOTALL)
CONFIG = """\
[[models]]
id = "reverse"
provider = "reverse"
[models.config]
word_delay_ms = 4
"""


def install_example(folder: Path) -> dict[str, str]:
    """The page's example package, installed into ``folder``/site; the environment that serves it."""
    files = dict(FILE.findall(DOCS))
    assert {"pyproject.toml", "heylook_reverse/plugin.py", "heylook_reverse/provider.py"} <= set(files)
    source = folder / "heylook-reverse"
    for name, text in files.items():
        path = source / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    site = folder / "site"
    command = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(site), str(source)]
    subprocess.run(command, check=True, capture_output=True, timeout=300)
    path = os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")]))
    return {"HEYLOOK_LOAD_PLUGINS": "reverse", "PYTHONPATH": path}


class TestTheDocsProvider(ConformanceSuite):
    heylook_models = ("reverse",)

    @pytest.fixture(scope="class")
    @classmethod
    def heylook_target(cls, tmp_path_factory: pytest.TempPathFactory) -> Target:
        folder = tmp_path_factory.mktemp("docs-example")
        env = install_example(folder)
        return Target(config=write_config(folder, CONFIG), env=env)


def test_it_answers_as_the_page_says(tmp_path: Path) -> None:
    env = install_example(tmp_path)
    with serve(write_config(tmp_path, CONFIG), env=env) as server:
        client = openai.OpenAI(base_url=server.base_url, api_key="none")
        try:
            reply = client.chat.completions.create(
                model="reverse", messages=[{"role": "user", "content": "one two three"}], max_tokens=5
            )
            tokens = client.post("/tokenize", body={"model": "reverse", "input": "hé"}, cast_to=object)
        finally:
            client.close()
    assert reply.choices[0].message.content == "three two one three two"
    assert reply.choices[0].finish_reason == "length"
    assert tokens["tokens"] == list("hé".encode())
