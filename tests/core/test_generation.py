"""Stop sequences and think tags across chunk boundaries."""

from __future__ import annotations

import pytest

from heylook_core.generation import StopMatcher, ThinkSplitter


def run_stop(stops: list[str], pieces: list[str]) -> tuple[str, bool]:
    matcher = StopMatcher(stops)
    out = []
    for piece in pieces:
        text, stopped = matcher.feed(piece)
        out.append(text)
        if stopped:
            return "".join(out), True
    return "".join(out) + matcher.flush(), False


@pytest.mark.parametrize(
    ("stops", "pieces", "expected"),
    [
        (["END"], ["hello E", "N", "D more"], ("hello ", True)),
        (["END"], ["hello E", "N", "d more"], ("hello ENd more", False)),
        (["\n\n", "###"], ["a\n", "b##", "#c"], ("a\nb", True)),
        ([], ["a", "b"], ("ab", False)),
        (["xyz"], ["abcxy"], ("abcxy", False)),
        (["ab", "b"], ["cab"], ("c", True)),
    ],
)
def test_stop_matcher(stops: list[str], pieces: list[str], expected: tuple[str, bool]) -> None:
    assert run_stop(stops, pieces) == expected


def test_stop_matcher_holds_back_only_possible_prefixes() -> None:
    matcher = StopMatcher(["</s>"])
    assert matcher.feed("hello <") == ("hello ", False)
    assert matcher.feed("b>") == ("<b>", False)


@pytest.mark.parametrize(
    "pieces",
    [
        ["<think>plan</think>answer"],
        ["<thi", "nk>pl", "an</th", "ink>ans", "wer"],
        list("<think>plan</think>answer"),
    ],
)
def test_think_splitter_across_boundaries(pieces: list[str]) -> None:
    splitter = ThinkSplitter("<think>", "</think>")
    content, reasoning = "", ""
    for piece in pieces:
        c, r = splitter.feed(piece)
        content, reasoning = content + c, reasoning + r
    c, r = splitter.flush()
    assert (content + c, reasoning + r) == ("answer", "plan")


def test_unclosed_think_stays_reasoning() -> None:
    splitter = ThinkSplitter("<think>", "</think>")
    assert splitter.feed("<think>still thinking </") == ("", "still thinking ")
    assert splitter.flush() == ("", "</")
