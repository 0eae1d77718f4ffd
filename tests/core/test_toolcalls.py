"""The core's tool-call parser over a corpus of model outputs in every format, drift included, in every chunking."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from heylook_core.toolcalls import ToolCallParser, canonical, detect_format, repair_json

CORPUS = json.loads((Path(__file__).parent / "toolcall_corpus" / "corpus.json").read_text(encoding="utf-8"))
TAGS = [
    "<tool_call>", "</tool_call>", "<|python_tag|>", "<|eom_id|>", "<|eot_id|>", "[TOOL_CALLS]", "[ARGS]",
    "[CALL_ID]", "</s>", "<｜tool▁calls▁begin｜>", "<｜tool▁calls▁end｜>", "<｜tool▁call▁begin｜>",
    "<｜tool▁call▁end｜>", "<｜tool▁sep｜>", "<|channel|>", "<|message|>", "<|start|>", "<|end|>", "<|call|>",
    "<|return|>", "<|constrain|>",
]  # fmt: skip


def run(fmt: str, chunks: list[str]) -> tuple[str, str, list[tuple[str, dict]]]:
    parser = ToolCallParser(fmt)
    text, reasoning, calls = [], [], {}
    for part in [parser.feed(chunk) for chunk in chunks] + [parser.finish()]:
        text.append(part.text)
        reasoning.append(part.reasoning)
        for fragment in part.tool_calls:
            index = fragment["index"]
            if index not in calls:  # the first fragment of a call: its id, type and name, nothing else before it
                assert fragment["id"].startswith("call_") and fragment["type"] == "function"
                assert fragment["function"]["name"] and index == len(calls)
                calls[index] = [fragment["function"]["name"], ""]
            else:
                assert set(fragment) == {"index", "function"} and set(fragment["function"]) == {"arguments"}
            calls[index][1] += fragment["function"].get("arguments") or ""
    parsed = [(name, json.loads(arguments)) for name, arguments in calls.values()]
    return "".join(text), "".join(reasoning), parsed


def chunkings(text: str) -> list[list[str]]:
    ways = [[text], list(text)]
    ways += [[text[:cut], text[cut:]] for cut in range(1, len(text))]
    ways += [[text[i : i + size] for i in range(0, len(text), size)] for size in (2, 3, 5, 7, 11)]
    rng = random.Random(15)
    for _ in range(20):
        cuts = sorted(rng.sample(range(1, len(text)), min(len(text) - 1, rng.randint(1, 8))))
        ways.append([text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)], strict=True)])
    return ways


@pytest.mark.parametrize("case", CORPUS, ids=[case["id"] for case in CORPUS])
def test_corpus_in_every_chunking(case: dict) -> None:
    expected_calls = [(name, arguments) for name, arguments in case["calls"]]
    for chunks in chunkings(case["text"]):
        content, reasoning, calls = run(case["format"], chunks)
        assert calls == expected_calls, chunks
        assert content == case["content"], chunks
        assert reasoning == case.get("reasoning", ""), chunks
        for tag in TAGS:
            assert tag not in content and tag not in reasoning, (tag, chunks)


def test_arguments_stream_in_pieces_once_the_name_is_known() -> None:
    parser = ToolCallParser("hermes")
    head = parser.feed('<tool_call>{"name": "write", "arguments": {"text": "')
    assert head.tool_calls[0]["function"] == {"name": "write", "arguments": ""}
    pieces = [parser.feed(piece).tool_calls for piece in ("hello ", "world", '"}}')]
    assert all(len(fragments) == 1 for fragments in pieces)
    assert parser.finish().tool_calls == []


def test_text_is_held_back_only_while_it_could_be_a_tag() -> None:
    parser = ToolCallParser("hermes")
    assert parser.feed("Hello <tool").text == "Hello "
    assert parser.feed("box> and").text == "<toolbox> and"


def test_parallel_tool_calls_false_keeps_the_first_call() -> None:
    parser = ToolCallParser("hermes", parallel=False)
    text = '<tool_call>{"name": "a", "arguments": {}}</tool_call><tool_call>{"name": "b", "arguments": {}}</tool_call>'
    fragments = parser.feed(text).tool_calls + parser.finish().tool_calls
    assert {f["index"] for f in fragments} == {0}
    assert [f["function"].get("name") for f in fragments if "id" in f] == ["a"]


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{% for tool in tools %}<tool_call>{{ tool_call.name }}</tool_call>{% endfor %}", "hermes"),
        ("{{ '<|python_tag|>' }}{{ tool.parameters }}", "llama3"),
        ("[AVAILABLE_TOOLS]{{ tools }}[TOOL_CALLS]", "mistral"),
        ("<｜tool▁calls▁begin｜>{{ tools }}", "deepseek"),
        ("<|channel|>commentary to=functions.{{ name }}<|call|>", "harmony"),
        ("{{ messages }}", None),
        (None, None),
    ],
)
def test_detect_format(template: str | None, expected: str | None) -> None:
    assert detect_format(template) == expected


def test_format_names() -> None:
    assert canonical("Qwen") == "hermes" and canonical("gpt-oss") == "harmony" and canonical("nope") is None
    with pytest.raises(ValueError, match="unknown tool_parser"):
        ToolCallParser("nope")


@pytest.mark.parametrize(
    ("raw", "repaired"),
    [
        ('{"a": 1,}', {"a": 1}),
        ("{'a': 'b'}", {"a": "b"}),
        ('{"a": [1, 2,],}', {"a": [1, 2]}),
        ('{"a": True, "b": None}', {"a": True, "b": None}),
        ('"{\\"a\\": 1}"', {"a": 1}),
        ('{"a": {"b": "c', {"a": {"b": "c"}}),
    ],
)
def test_repair_json(raw: str, repaired: object) -> None:
    assert json.loads(repair_json(raw) or "null") == repaired


@pytest.mark.parametrize("raw", ['{"a": foo}', '{"a" 1}', "[1 2]", '{"a": }', '"just a string"'])
def test_repair_json_refuses_what_is_ambiguous(raw: str) -> None:
    assert repair_json(raw) is None


def test_tool_parser_in_a_model_table() -> None:
    from heylook_core.config import ModelEntry

    assert ModelEntry(id="m", provider="echo", tool_parser="Qwen").tool_parser == "hermes"
    assert ModelEntry(id="m", provider="echo", tool_parser="none").tool_parser == "none"
    with pytest.raises(ValueError, match="unknown tool_parser"):
        ModelEntry(id="m", provider="echo", tool_parser="qwen9")


def test_a_delegated_format_reads_whole_calls_with_the_library_parser() -> None:
    from heylook_core.toolcalls import delegated_format

    def parse(text: str) -> dict:
        name, _, value = text.strip().partition("=")
        if not value:
            raise ValueError("no '='")
        return {"name": name, "arguments": {"value": value}}

    fmt = delegated_format("lib", "<call>", "</call>", parse)
    for chunks in chunkings("a<call>f=1</call>b<call>nonsense</call>c"):
        parser = ToolCallParser(fmt)
        parts = [parser.feed(chunk) for chunk in chunks] + [parser.finish()]
        fragments = [f for part in parts for f in part.tool_calls]
        assert "".join(part.text for part in parts) == "abnonsensec"
        assert [f["function"].get("name") for f in fragments if "id" in f] == ["f"]
        assert json.loads("".join(f["function"].get("arguments") or "" for f in fragments)) == {"value": "1"}


@pytest.mark.parametrize("case", CORPUS, ids=[case["id"] for case in CORPUS])
def test_every_truncation_is_read_without_error_or_leaked_tags(case: dict) -> None:
    """An output cut off anywhere (max_tokens, a dropped connection) still yields valid calls and clean text."""
    text = case["text"]
    for end in range(len(text) + 1):
        for chunks in ([text[:end]], list(text[:end])):
            content, reasoning, _calls = run(case["format"], chunks)  # arguments are valid JSON (run loads them)
            for tag in TAGS:
                assert tag not in content and tag not in reasoning, (tag, end)


OWN_TAGS = {
    "hermes": ["<tool_call>", "</tool_call>"],
    "llama3": ["<|python_tag|>", "<|eom_id|>", "<|eot_id|>"],
    "mistral": ["[TOOL_CALLS]", "[ARGS]", "[CALL_ID]", "</s>"],
    "deepseek": [tag for tag in TAGS if "▁" in tag],
    "harmony": ["<|channel|>", "<|message|>", "<|start|>", "<|end|>", "<|call|>", "<|return|>", "<|constrain|>"],
}
PIECES = [*TAGS, "{", "}", "[", "]", '"', "'", ":", ",", " ", "\n", "\\", "name", '"name": "f"', '"arguments": ']
PIECES += ["abc", "1", "true", "function", "to=functions.f", "commentary", "analysis", "final", "```json\n", "```"]


@pytest.mark.parametrize("fmt", sorted(OWN_TAGS))
def test_random_outputs_never_raise_leak_the_formats_tags_or_give_broken_arguments(fmt: str) -> None:
    rng = random.Random(fmt)
    for _ in range(1500):
        text = "".join(rng.choice(PIECES) for _ in range(rng.randint(1, 14)))
        cuts = sorted({rng.randint(0, len(text)) for _ in range(rng.randint(0, 5))})
        chunks = [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)], strict=True)]
        content, reasoning, _calls = run(fmt, chunks)  # arguments are valid JSON (run loads them)
        for tag in OWN_TAGS[fmt]:
            assert tag not in content + reasoning, (tag, text)
