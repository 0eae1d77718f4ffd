"""Tool calls parsed out of a model's streamed text, in the model's own format.

A :class:`ToolCallParser` is fed the text deltas of one generation (after reasoning was split out) and returns, for
each piece, the content that is safe to send now, any reasoning (gpt-oss's analysis channel) and OpenAI streaming
tool-call fragments: ``{"index", "id", "type", "function": {"name", "arguments": ""}}`` as soon as a call's name is
known, then ``{"index", "function": {"arguments": piece}}`` as its arguments arrive. It holds back only what could be
the start of a tag.

Formats (``tool_parser`` in a model's table, or :func:`detect_format` on its chat template):

- ``hermes`` (Qwen 2.5/3, Hermes, many fine-tunes): ``<tool_call>{"name": ..., "arguments": {...}}</tool_call>``.
- ``llama3`` (Llama 3.1-3.3): a bare JSON object ``{"name": ..., "parameters": {...}}`` as the whole answer, or
  after ``<|python_tag|>``; several separated by ``;``.
- ``mistral``: ``[TOOL_CALLS][{"name": ..., "arguments": {...}}, ...]`` or ``[TOOL_CALLS]name[ARGS]{...}``.
- ``deepseek`` (V3, R1, V3.1): ``<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>NAME`` and a
  fenced JSON block, or ``NAME<｜tool▁sep｜>{...}``, each closed by ``<｜tool▁call▁end｜>``.
- ``harmony`` (gpt-oss): ``<|channel|>commentary to=functions.NAME <|constrain|>json<|message|>{...}<|call|>``; the
  analysis channel is reasoning, final and commentary without a recipient are content.

Drift is repaired where that is unambiguous: single-quoted strings, trailing commas, Python's ``True``/``False``/
``None``, unquoted keys, raw newlines in strings, arguments sent as a JSON string, and a call cut off at the end of
the output (its open strings, objects and arrays are closed). A call that still cannot be read (no function name,
arguments that are not JSON) is returned as content, without its tags, and the reason is logged: never an error,
never dropped.
"""

from __future__ import annotations

import json
import logging
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

logger = logging.getLogger(__name__)

Fragment = dict[str, Any]


@dataclass(slots=True)
class Parsed:
    """What one :meth:`ToolCallParser.feed` (or ``finish``) returns."""

    text: str = ""
    reasoning: str = ""
    tool_calls: list[Fragment] = field(default_factory=list)


def new_call_id() -> str:
    return "call_" + uuid.uuid4().hex[:24]


# --------------------------------------------------------------------------------------------------------------------
# A streaming, repairing JSON value scanner: the arguments of a call.


class _Broken(Exception):
    pass


_LITERALS = {"true": "true", "false": "false", "null": "null", "True": "true", "False": "false", "None": "null"}
_NUMBER = re.compile(r"-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?")
_IDENT = re.compile(r"[A-Za-z_$][\w$\-]*")


class JsonRepair:
    """Reads one JSON value a character at a time and writes it out repaired, as far as it is known.

    ``feed(text)`` returns ``(output, consumed)``: the repaired text that can be sent now and how many characters of
    ``text`` belong to the value (it stops after the value's end; ``done`` is then true). ``close()`` returns what
    completes a value cut off early. ``error`` holds the reason once the input cannot be read as JSON. A top-level
    string (arguments sent as a JSON string) is decoded and its content read as the value.
    """

    __slots__ = ("stack", "expect", "quote", "escape", "token", "held", "done", "error", "started", "_string", "_out")

    def __init__(self) -> None:
        self.stack: list[str] = []
        self.expect = "value"  # value | key | colon | next (a comma or the end of the container)
        self.quote = ""  # the open string's quote character
        self.escape = False
        self.token = ""  # a bare word or number being read
        self.held = ""  # a comma (and the blanks after it) not sent until the next item shows it was not trailing
        self.done = False
        self.error: str | None = None
        self.started = False
        self._string: list[str] | None = None  # a top-level string's characters, kept to decode at its end
        self._out: list[str] = []

    def feed(self, text: str) -> tuple[str, int]:
        out = self._out = []
        consumed = 0
        try:
            for char in text:
                if self.done:
                    break
                consumed += 1
                self._char(char)
        except _Broken as broken:
            self.error = str(broken)
        return "".join(out), consumed

    def close(self) -> str:
        """What completes a value cut off at the end of the output (empty when it is complete)."""
        if self.done or self.error:
            return ""
        if self._string is not None:
            out = self._out = []
            self.quote = ""
            try:
                self._finish_top_string()
            except _Broken as broken:
                self.error = str(broken)
                return ""
            return "".join(out)
        return self.closers()

    def closers(self) -> str:
        """What makes the text sent so far one valid value, even after an error (the bad input was never sent)."""
        if self.done:
            return ""
        out: list[str] = []
        if self._string is not None or not self.started:
            self._string = None
            self.done = True
            return ""
        if self.quote:  # an escape cut off mid-way is dropped
            out.append('"')
            self.quote = ""
            self.expect = "colon" if self.expect == "key" else "next"
        if self.token:  # (after the comma held before it)
            out.append(self.held)
            self.held = ""
            out.append(self._partial_token())
        comma, self.held = self.held, ""
        if not comma:
            if self.expect == "colon":
                out.append(": null")
            elif self.expect == "value" and self.stack and not self.token:
                out.append("null")
        self.token = ""
        while self.stack:
            out.append("}" if self.stack.pop() == "{" else "]")
        self.done = True
        return "".join(out)

    def _partial_token(self) -> str:
        """A bare word or number cut off at the end, as the value (or key) it was becoming."""
        token = self.token
        if self.expect == "key":
            self.expect = "colon"
            return json.dumps(token)
        for literal, value in _LITERALS.items():
            if literal.startswith(token):
                return value
        number = _NUMBER.match(token)
        return number.group(0) if number else "null"

    # -- the scanner

    def _emit(self, text: str) -> None:
        if self.held:
            self._out.append(self.held)
            self.held = ""
        self._out.append(text)

    def _char(self, char: str) -> None:
        if self._string is not None:
            self._top_string_char(char)
            return
        if self.quote:
            self._string_char(char)
            return
        if self.token:
            if char.isalnum() or char in "_$-+.":
                self.token += char
                return
            self._end_token()
            if self.done:
                return
        if char in " \t\r\n":
            if self.held:
                self.held += char
            elif self.started:
                self._out.append(char)
            return
        if char in "\"'":
            if not self.stack and self.expect == "value":
                self.started = True
                self._string = []
                self.quote = char
                return
            if self.expect not in ("value", "key"):
                raise _Broken(f"a string where {self._wanted()} was expected")
            self.quote = char
            self._emit('"')
            return
        if char in "{[":
            if self.expect != "value":
                raise _Broken(f"'{char}' where {self._wanted()} was expected")
            self.started = True
            self.stack.append(char)
            self.expect = "key" if char == "{" else "value"
            self._emit(char)
            return
        if char in "}]":
            if not self.stack or self.stack[-1] != ("{" if char == "}" else "["):
                raise _Broken(f"an unmatched '{char}'")
            if self.expect == "colon" or (self.expect == "value" and self.stack[-1] == "{"):
                raise _Broken(f"'{char}' where {self._wanted()} was expected")
            self.held = ""  # a trailing comma is dropped
            self.stack.pop()
            self._out.append(char)
            self._after_value()
            return
        if char == ":":
            if self.expect != "colon":
                raise _Broken(f"':' where {self._wanted()} was expected")
            self._out.append(char)
            self.expect = "value"
            return
        if char == ",":
            if self.expect != "next":
                raise _Broken(f"',' where {self._wanted()} was expected")
            self.held = ","
            self.expect = "key" if self.stack[-1] == "{" else "value"
            return
        if char.isalnum() or char in "_$-.":
            if self.expect not in ("value", "key"):
                raise _Broken(f"'{char}' where {self._wanted()} was expected")
            self.started = True
            self.token = char
            return
        raise _Broken(f"an unexpected {char!r}")

    def _wanted(self) -> str:
        return {"value": "a value", "key": "a key", "colon": "':'", "next": "',' or the end"}[self.expect]

    def _string_char(self, char: str) -> None:
        if self.escape:
            self.escape = False
            if self.quote == "'" and char == "'":
                self._out.append("'")
            elif char in '"\\/bfnrtu':
                self._out.append("\\" + char)
            else:  # an escape JSON lacks: the character itself
                self._out.append(char)
            return
        if char == "\\":
            self.escape = True
            return
        if char == self.quote:
            self.quote = ""
            self._out.append('"')
            self._after_string()
            return
        if char == '"':
            self._out.append('\\"')
        elif char == "\n":
            self._out.append("\\n")
        elif char == "\t":
            self._out.append("\\t")
        elif char < " ":
            self._out.append(f"\\u{ord(char):04x}")
        else:
            self._out.append(char)

    def _after_string(self) -> None:
        if self.expect == "key":
            self.expect = "colon"
        else:
            self._after_value()

    def _after_value(self) -> None:
        if not self.stack:
            self.done = True
            self.expect = "next"
        else:
            self.expect = "next"

    def _end_token(self) -> None:
        token, self.token = self.token, ""
        if self.expect == "key":
            if not _IDENT.fullmatch(token):
                raise _Broken(f"the key {token!r}")
            self._emit(json.dumps(token))
            self.expect = "colon"
            return
        if token in _LITERALS:
            self._emit(_LITERALS[token])
        elif _NUMBER.fullmatch(token):
            self._emit(token)
        else:
            raise _Broken(f"the bare word {token[:40]!r}")
        self._after_value()

    def _top_string_char(self, char: str) -> None:
        chars = self._string
        assert chars is not None
        if self.escape:
            self.escape = False
            chars.append("\\" + char)
            return
        if char == "\\":
            self.escape = True
            return
        if char == self.quote:
            self.quote = ""
            self._finish_top_string()
            return
        chars.append(char)

    def _finish_top_string(self) -> None:
        raw = "".join(self._string or [])
        self._string = None
        try:
            inner = json.loads('"' + raw.replace('"', '\\"').replace('\\\\"', '\\"') + '"')
        except json.JSONDecodeError:
            inner = raw
        value = repair_json(inner)
        if value is None or not value.lstrip().startswith("{"):
            raise _Broken("arguments given as a string that does not hold a JSON object")
        self._out.append(value)
        self.done = True


def repair_json(text: str) -> str | None:
    """One whole JSON value repaired (see :class:`JsonRepair`), or None when it cannot be read."""
    scanner = JsonRepair()
    out, consumed = scanner.feed(text)
    if scanner.error:
        return None
    if not scanner.done:
        out += scanner.close()
    if scanner.error or text[consumed:].strip():
        return None
    try:
        json.loads(out)
    except json.JSONDecodeError:
        return None
    return out


# --------------------------------------------------------------------------------------------------------------------
# The parser.


class _Sink:
    """Where a format writes: content, reasoning, fragments, and the calls made so far."""

    def __init__(self, parallel: bool) -> None:
        self.parallel = parallel
        self.text: list[str] = []
        self.reasoning: list[str] = []
        self.fragments: list[Fragment] = []
        self.calls = 0
        self.dropped = 0
        self.tags: tuple[str, ...] = ()  # the format's own tags, never written to content

    def fallback(self, text: str) -> None:
        """Text of a call that could not be read, as content without the format's tags."""
        for tag in self.tags:
            text = text.replace(tag, "")
        self.text.append(text)

    def take(self) -> Parsed:
        parsed = Parsed("".join(self.text), "".join(self.reasoning), self.fragments)
        self.text, self.reasoning, self.fragments = [], [], []
        return parsed


class _Call:
    """One call being read: its name may come before or after its arguments (which are buffered until then)."""

    def __init__(self, sink: _Sink) -> None:
        self.sink = sink
        self.index: int | None = None
        self.name: str | None = None
        self.args = JsonRepair()
        self.pending: list[str] = []  # repaired arguments not sent yet (the name is not known yet)
        self.sent_args = False
        self.skip = False  # a second call when parallel_tool_calls is false

    def set_name(self, name: str) -> None:
        if self.name is not None:
            return
        self.name = name
        sink = self.sink
        if not sink.parallel and sink.calls >= 1:
            self.skip = True
            sink.dropped += 1
            return
        self.index = sink.calls
        sink.calls += 1
        sink.fragments.append(
            {"index": self.index, "id": new_call_id(), "type": "function", "function": {"name": name, "arguments": ""}}
        )
        if self.pending:
            self._send("".join(self.pending))
            self.pending = []

    def feed_args(self, text: str) -> int:
        """Feed argument text; returns how much of it belonged to the arguments."""
        if self.args.done or self.args.error:
            return 0
        out, consumed = self.args.feed(text)
        self._queue(out)
        return consumed

    def _queue(self, out: str) -> None:
        if not out:
            return
        if self.index is None:
            self.pending.append(out)
        else:
            self._send(out)

    def _send(self, out: str) -> None:
        if self.skip or not out:
            return
        self.sent_args = True
        self.sink.fragments.append({"index": self.index, "function": {"arguments": out}})

    def finish(self, raw: str, why_not: str | None = None) -> None:
        """End the call; ``raw`` (its text without tags) becomes content when it cannot be read."""
        if self.args.started and not self.args.error:
            self._queue(self.args.close())
        if self.args.error and self.index is not None:  # announced: what was sent is closed into valid JSON
            self._queue(self.args.closers() if self.sent_args else "{}")
        reason = why_not
        if reason is None and self.name is None:
            reason = "it has no function name"
        if reason is None and self.args.error:
            reason = f"its arguments are not JSON ({self.args.error})"
        if reason is None and not self.args.started:
            self._queue("{}")
        if reason is None:
            return
        if self.index is not None:  # already announced: the arguments it has are closed, the text is kept too
            logger.warning(
                "a tool call's arguments broke off after it started (%s); its text follows as content", reason
            )
            self.sink.fallback(raw)
            return
        logger.warning("a tool call could not be read (%s); returned as text: %.200r", reason, raw)
        self.sink.fallback(raw)


_NAME_RE = re.compile(
    r"""(?:["'](?:name|function)["']|(?<=[{,\s])(?:name|function))\s*:\s*(?:"((?:[^"\\]|\\.)*)"|'((?:[^'\\]|\\.)*)')"""
)
_ARGS_RE = re.compile(
    r"""(?:["'](?:arguments|parameters|args|input)["']|(?<=[{,\s])(?:arguments|parameters|args|input))\s*:\s*"""
)


class _ObjectCall:
    """A call written as one JSON object: ``{"name": ..., "arguments": {...}}`` (also "parameters")."""

    def __init__(self, sink: _Sink) -> None:
        self.call = _Call(sink)
        self.raw = ""
        self.depth = 0
        self.quote = ""
        self.escape = False
        self.complete = False
        self.args_at: int | None = None  # where the arguments' value starts in raw
        self.args_fed = 0
        self.args_end: int | None = None

    def feed(self, text: str) -> int:
        """Feed object text; returns how much belonged to the object (it stops after its closing brace)."""
        used = len(text)
        for offset, char in enumerate(text):
            if self._scan(char):
                used = offset + 1
                self.complete = True
                break
        self.raw += text[:used]
        self._advance()
        return used

    def _scan(self, char: str) -> bool:
        if self.quote:
            if self.escape:
                self.escape = False
            elif char == "\\":
                self.escape = True
            elif char == self.quote:
                self.quote = ""
            return False
        if char in "\"'":
            self.quote = char
        elif char in "{[":
            self.depth += 1
        elif char in "}]":
            self.depth -= 1
            return self.depth <= 0
        return False

    def _advance(self) -> None:
        call = self.call
        raw = self.raw
        if self.args_at is None:
            match = _ARGS_RE.search(raw)
            if match:
                self.args_at = self.args_fed = match.end()
        if self.args_at is not None and self.args_end is None:
            piece = raw[self.args_fed :]
            if piece:
                self.args_fed += call.feed_args(piece)
                if call.args.done:
                    self.args_end = self.args_fed
                elif call.args.error:
                    self.args_end = len(raw)
        if call.name is None:
            searched = raw if self.args_at is None else raw[: self.args_at]
            if self.args_end is not None:
                searched += " " + raw[self.args_end :]
            match = _NAME_RE.search(searched)
            if match:
                name = match.group(1) if match.group(1) is not None else match.group(2)
                try:
                    name = json.loads(f'"{name}"')
                except json.JSONDecodeError:
                    pass
                if name:
                    call.set_name(name)

    def finish(self) -> None:
        self.call.finish(self.raw)


_SEPARATORS = " \t\r\n,;"


class _JsonCallsRegion:
    """A run of JSON call objects: one, several separated by commas or semicolons, or a JSON array of them."""

    def __init__(self, sink: _Sink) -> None:
        self.sink = sink
        self.current: _ObjectCall | None = None
        self.stray: list[str] = []

    def feed(self, text: str) -> None:
        while text:
            if self.current is not None:
                used = self.current.feed(text)
                text = text[used:]
                if self.current.complete:
                    self.current.finish()
                    self.current = None
                continue
            char = text[0]
            if char == "{":
                self.current = _ObjectCall(self.sink)
                continue
            if char not in _SEPARATORS + "[]":
                self.stray.append(char)
            elif self.stray:
                self.stray.append(char)
            text = text[1:]

    def finish(self) -> None:
        if self.current is not None:
            self.current.finish()
            self.current = None
        stray = "".join(self.stray).strip()
        if stray:
            logger.warning("text inside a tool-call region that is not a call; returned as text: %.200r", stray)
            self.sink.fallback(stray)


_MISTRAL_HEADER = re.compile(r"\s*([A-Za-z_][\w.\-]*)\s*(?:\[CALL_ID\]\s*([\w\-]+)\s*)?\[ARGS\]\s*")


class _MistralRegion:
    """After ``[TOOL_CALLS]``: a JSON array of calls, or ``name[ARGS]{...}`` (repeated)."""

    def __init__(self, sink: _Sink) -> None:
        self.sink = sink
        self.raw = ""
        self.json: _JsonCallsRegion | None = None
        self.call: _Call | None = None
        self.call_raw = ""
        self.pos = 0

    def feed(self, text: str) -> None:
        if self.json is not None:
            self.json.feed(text)
            return
        self.raw += text
        if self.call is None and self.pos == 0:
            head = self.raw.lstrip()
            inner = ("[ARGS]", "[CALL_ID]")
            if head and any(tag.startswith(head) for tag in inner):
                return  # it may still be one of Mistral's own tags, not a JSON array
            if head[:1] in ("[", "{") and not head.startswith(inner):
                self.json = _JsonCallsRegion(self.sink)
                self.json.feed(self.raw)
                return
        self._advance()

    def _advance(self) -> None:
        while True:
            if self.call is None:
                match = _MISTRAL_HEADER.match(self.raw, self.pos)
                if match is None:
                    return
                self.call = _Call(self.sink)
                self.call.set_name(match.group(1))
                self.call_raw = match.group(0)
                self.pos = match.end()
            piece = self.raw[self.pos :]
            if not piece:
                return
            consumed = self.call.feed_args(piece)
            self.call_raw += piece[:consumed]
            self.pos += consumed
            if self.call.args.done or self.call.args.error:
                if self.call.args.error:
                    self.call_raw += self.raw[self.pos :]
                    self.pos = len(self.raw)
                self.call.finish(self.call_raw)
                self.call = None
                continue
            return

    def finish(self) -> None:
        if self.json is not None:
            self.json.finish()
            return
        if self.call is not None:
            self.call.finish(self.call_raw)
            self.call = None
        rest = re.sub(r"\[(?:CALL_ID|ARGS)\]", " ", self.raw[self.pos :]).strip()
        if rest:
            logger.warning("text after [TOOL_CALLS] that is not a call; returned as text: %.200r", rest)
            self.sink.fallback(rest)


DS_CALLS_BEGIN = "<｜tool▁calls▁begin｜>"
DS_CALLS_END = "<｜tool▁calls▁end｜>"
DS_CALL_BEGIN = "<｜tool▁call▁begin｜>"
DS_CALL_END = "<｜tool▁call▁end｜>"
DS_SEP = "<｜tool▁sep｜>"
_DS_HEADER = re.compile(
    r"\s*"
    + re.escape(DS_CALL_BEGIN)
    + r"\s*(?:function\s*"
    + re.escape(DS_SEP)
    + r"\s*([^\n<]+?)\s*\n\s*(?:```(?:json)?[ \t]*\n\s*)?"
    r"|([^\n<]+?)\s*" + re.escape(DS_SEP) + r"\s*)"
)


class _DeepSeekRegion:
    """Between ``<｜tool▁calls▁begin｜>`` and ``<｜tool▁calls▁end｜>``: calls, each in its own markers."""

    def __init__(self, sink: _Sink) -> None:
        self.sink = sink
        self.raw = ""
        self.pos = 0
        self.call: _Call | None = None
        self.call_raw = ""

    def feed(self, text: str) -> None:
        self.raw += text
        while True:
            if self.call is None:
                match = _DS_HEADER.match(self.raw, self.pos)
                if match is None:
                    rest = self.raw[self.pos :]
                    end = rest.find(DS_CALL_END)
                    if end != -1 and not rest[:end].strip():  # a stray end marker
                        self.pos += end + len(DS_CALL_END)
                        continue
                    return
                name = (match.group(1) or match.group(2) or "").strip()
                rest = self.raw[match.end() :].lstrip()
                if match.group(1) is not None and (not rest or "```json\n".startswith(rest)):
                    return  # the fence may still be coming
                if match.group(2) is not None and name == "function":
                    return  # V3's "function<｜tool▁sep｜>NAME\n": the name's line is still coming
                self.call = _Call(self.sink)
                self.call.set_name(name)
                self.call_raw = name + " "
                self.pos = match.end()
            if not self.call.args.done and not self.call.args.error:
                piece = self.raw[self.pos :]
                if not piece:
                    return
                consumed = self.call.feed_args(piece)
                self.call_raw += piece[:consumed]
                self.pos += consumed
                if not (self.call.args.done or self.call.args.error):
                    return
            end = self.raw.find(DS_CALL_END, self.pos)
            if end == -1:
                return
            self.call.finish(self.call_raw)
            self.call = None
            self.pos = end + len(DS_CALL_END)

    def finish(self) -> None:
        if self.call is not None:
            self.call.finish(self.call_raw)
            self.call = None
        rest = self.raw[self.pos :].replace(DS_CALL_END, "").replace(DS_CALL_BEGIN, "").replace(DS_SEP, " ")
        rest = rest.replace("```json", "").replace("```", "").strip()
        if rest:
            logger.warning("text in DeepSeek's tool-call markers that is not a call; returned as text: %.200r", rest)
            self.sink.fallback(rest)


def _held_prefix(buffer: str, markers: tuple[str, ...]) -> int:
    """How many characters at the end of ``buffer`` could be the start of one of ``markers``."""
    best = 0
    for marker in markers:
        for size in range(min(len(marker) - 1, len(buffer)), best, -1):
            if buffer.endswith(marker[:size]):
                best = size
                break
    return best


def _find_first(buffer: str, markers: tuple[str, ...]) -> tuple[int, str]:
    best, found = -1, ""
    for marker in markers:
        index = buffer.find(marker)
        if index != -1 and (best == -1 or index < best or (index == best and len(marker) > len(found))):
            best, found = index, marker
    return best, found


@dataclass(frozen=True)
class TaggedFormat:
    """A format whose calls sit in regions opened by ``starts`` and closed by ``ends`` (or the end of the output).

    ``region`` makes the reader of a region's text; ``strip`` are tags dropped from content wherever they appear;
    ``leading_json`` opens a region when the output itself starts with ``{`` (Llama 3's JSON calls).
    """

    name: str
    starts: tuple[str, ...]
    ends: tuple[str, ...]
    region: Callable[[_Sink], Any]
    strip: tuple[str, ...] = ()
    leading_json: bool = False


class _TaggedParser:
    def __init__(self, fmt: TaggedFormat, sink: _Sink) -> None:
        self.fmt = fmt
        self.sink = sink
        self.held = ""
        self.region: Any = None
        self.at_start = fmt.leading_json
        self.text_markers = fmt.starts + fmt.strip
        self.end_markers = fmt.ends
        sink.tags = tuple(sorted(set(fmt.starts + fmt.ends + fmt.strip), key=len, reverse=True))

    def feed(self, text: str) -> None:
        buffer = self.held + text
        self.held = ""
        while buffer:
            if self.at_start:
                head = buffer.lstrip()
                if not head:
                    self.held = buffer
                    return
                self.at_start = False
                if head[0] == "{":
                    self.region = self.fmt.region(self.sink)
                    buffer = head
                    continue
            if self.region is None:
                index, marker = _find_first(buffer, self.text_markers)
                if index == -1:
                    keep = _held_prefix(buffer, self.text_markers)
                    self.sink.text.append(buffer[: len(buffer) - keep])
                    self.held = buffer[len(buffer) - keep :]
                    return
                self.sink.text.append(buffer[:index])
                buffer = buffer[index + len(marker) :]
                if marker in self.fmt.starts:
                    self.region = self.fmt.region(self.sink)
                continue
            if not self.end_markers:
                self.region.feed(buffer)
                return
            index, marker = _find_first(buffer, self.end_markers)
            if index == -1:
                keep = _held_prefix(buffer, self.end_markers)
                self.region.feed(buffer[: len(buffer) - keep])
                self.held = buffer[len(buffer) - keep :]
                return
            self.region.feed(buffer[:index])
            self.region.finish()
            self.region = None
            buffer = buffer[index + len(marker) :]
            if marker in self.fmt.starts:
                self.region = self.fmt.region(self.sink)

    def finish(self) -> None:
        held, self.held = self.held, ""
        if self.region is not None:
            if held:
                self.region.feed(held)
            self.region.finish()
            self.region = None
        elif held:
            self.sink.text.append(held)


# -- harmony (gpt-oss)

_H_START, _H_CHANNEL, _H_MESSAGE = "<|start|>", "<|channel|>", "<|message|>"
_H_END, _H_CALL, _H_RETURN, _H_CONSTRAIN = "<|end|>", "<|call|>", "<|return|>", "<|constrain|>"
_H_TAGS = (_H_START, _H_CHANNEL, _H_MESSAGE, _H_END, _H_CALL, _H_RETURN, _H_CONSTRAIN)
_H_RECIPIENT = re.compile(r"to=([^\s<]+)")


class _HarmonyParser:
    """gpt-oss's channels: analysis is reasoning, final and commentary are content, a recipient makes a call."""

    def __init__(self, sink: _Sink) -> None:
        self.sink = sink
        sink.tags = _H_TAGS
        self.held = ""
        self.mode = "body"  # header | body
        self.target = "text"  # text | reasoning | call
        self.header = ""
        self.call: _Call | None = None
        self.call_raw = ""

    def feed(self, text: str) -> None:
        buffer = self.held + text
        self.held = ""
        while buffer:
            index, tag = _find_first(buffer, _H_TAGS)
            if index == -1:
                keep = _held_prefix(buffer, _H_TAGS)
                self._write(buffer[: len(buffer) - keep])
                self.held = buffer[len(buffer) - keep :]
                return
            self._write(buffer[:index])
            buffer = buffer[index + len(tag) :]
            self._tag(tag)

    def _write(self, text: str) -> None:
        if not text:
            return
        if self.mode == "header":
            self.header += text
        elif self.target == "reasoning":
            self.sink.reasoning.append(text)
        elif self.target == "call":
            assert self.call is not None
            self.call.feed_args(text)
            self.call_raw += text
        else:
            self.sink.text.append(text)

    def _tag(self, tag: str) -> None:
        if tag in (_H_START, _H_CHANNEL):
            if self.mode == "body":
                self._end_message()
                self.mode = "header"
                self.header = ""
            self.header += " channel=" if tag == _H_CHANNEL else " "
        elif tag == _H_CONSTRAIN:
            self.header += " constrain="
        elif tag == _H_MESSAGE:
            if self.mode == "header":
                self._begin_message()
        else:  # end, call, return
            self._end_message()

    def _begin_message(self) -> None:
        header = self.header
        self.mode = "body"
        channel = re.search(r"channel=\s*(\w+)", header)
        recipient = _H_RECIPIENT.search(header)
        name = recipient.group(1) if recipient else None
        analysis = channel is not None and channel.group(1) == "analysis"
        if name and not analysis:
            self.target = "call"
            self.call = _Call(self.sink)
            self.call.set_name(name[len("functions.") :] if name.startswith("functions.") else name)
            self.call_raw = ""
        else:
            self.target = "reasoning" if analysis else "text"

    def _end_message(self) -> None:
        if self.mode == "header":  # a header that never got its message: nothing to say
            self.mode = "body"
        if self.call is not None:
            self.call.finish(self.call_raw)
            self.call = None
        self.target = "text"

    def finish(self) -> None:
        held, self.held = self.held, ""
        if held:
            self._write(held)
        self._end_message()


class _DelegatedRegion:
    """A region read whole by an engine library's parser (``parse(text, tools)`` -> a call dict or a list of them)."""

    def __init__(self, sink: _Sink, parse: Callable[[str], Any]) -> None:
        self.sink = sink
        self.parse = parse
        self.raw: list[str] = []

    def feed(self, text: str) -> None:
        self.raw.append(text)

    def finish(self) -> None:
        raw = "".join(self.raw)
        try:
            parsed = self.parse(raw)
        except Exception as error:  # a library's parser raises what it likes on a call it cannot read
            logger.warning("a tool call could not be read (%s); returned as text: %.200r", error, raw)
            self.sink.fallback(raw.strip())
            return
        for item in parsed if isinstance(parsed, list) else [parsed]:
            name = item.get("name") if isinstance(item, dict) else None
            arguments = item.get("arguments", {}) if isinstance(item, dict) else None
            if not isinstance(name, str) or not name:
                logger.warning("a tool call has no function name; returned as text: %.200r", raw)
                self.sink.fallback(raw.strip())
                return
            call = _Call(self.sink)
            call.set_name(name)
            call._queue(arguments if isinstance(arguments, str) else json.dumps(arguments, ensure_ascii=False))


def delegated_format(name: str, start: str, end: str, parse: Callable[[str], Any]) -> TaggedFormat:
    """A format whose calls sit between ``start`` and ``end`` (empty: the end of the output), read by ``parse``.

    For an engine library's own parsers (mlx-lm's ``tool_parsers``): arguments arrive in one piece when the call
    ends, and a call that ``parse`` refuses comes back as text.
    """
    return TaggedFormat(
        name,
        (start,),
        (end,) if end else (),
        lambda sink: _DelegatedRegion(sink, parse),
        strip=(end,) if end else (),
    )


FORMATS: dict[str, TaggedFormat | str] = {
    "hermes": TaggedFormat("hermes", ("<tool_call>",), ("</tool_call>",), _JsonCallsRegion, strip=("</tool_call>",)),
    "llama3": TaggedFormat(
        "llama3",
        ("<|python_tag|>",),
        ("<|eom_id|>", "<|eot_id|>"),
        _JsonCallsRegion,
        strip=("<|eom_id|>", "<|eot_id|>"),
        leading_json=True,
    ),
    "mistral": TaggedFormat(
        "mistral", ("[TOOL_CALLS]",), ("[TOOL_CALLS]", "</s>"), _MistralRegion, strip=("</s>", "[ARGS]", "[CALL_ID]")
    ),
    "deepseek": TaggedFormat(
        "deepseek",
        (DS_CALLS_BEGIN,),
        (DS_CALLS_END,),
        _DeepSeekRegion,
        strip=(DS_CALLS_END, DS_CALL_BEGIN, DS_CALL_END, DS_SEP),
    ),
    "harmony": "harmony",
}
ALIASES = {"qwen": "hermes", "qwen2": "hermes", "qwen3": "hermes", "json_tools": "hermes", "llama": "llama3",
           "gpt-oss": "harmony", "gpt_oss": "harmony", "deepseek_v3": "deepseek"}  # fmt: skip


def format_names() -> list[str]:
    return sorted(FORMATS) + sorted(ALIASES)


def canonical(name: str) -> str | None:
    """The format a ``tool_parser`` value names, or None when it names none."""
    name = name.strip().lower()
    name = ALIASES.get(name, name)
    return name if name in FORMATS else None


def detect_format(template: str | None) -> str | None:
    """The tool-call format a chat template writes, or None when it shows none."""
    if not template:
        return None
    if "<|channel|>" in template and ("to=functions" in template or "<|call|>" in template):
        return "harmony"
    if "tool▁calls▁begin" in template:
        return "deepseek"
    if "[TOOL_CALLS]" in template:
        return "mistral"
    if "<tool_call>" in template:
        return "hermes"
    if "<|python_tag|>" in template or ("<|eom_id|>" in template and "parameters" in template):
        return "llama3"
    return None


def template_supports_tools(template: str | None) -> bool:
    """Whether a chat template renders ``tools`` at all."""
    return bool(template) and "tools" in str(template)


class ToolCallParser:
    """One generation's tool-call reader in one format; see the module's docstring."""

    __slots__ = ("format", "_sink", "_reader", "_finished")

    def __init__(self, fmt: str | TaggedFormat, *, parallel: bool = True) -> None:
        spec: TaggedFormat | str
        if isinstance(fmt, TaggedFormat):
            name, spec = fmt.name, fmt
        else:
            known = canonical(fmt)
            if known is None:
                raise ValueError(f"unknown tool_parser {fmt!r} (known: {', '.join(format_names())})")
            name, spec = known, FORMATS[known]
        self.format = name
        self._sink = _Sink(parallel)
        self._reader: _HarmonyParser | _TaggedParser = (
            _TaggedParser(spec, self._sink) if isinstance(spec, TaggedFormat) else _HarmonyParser(self._sink)
        )
        self._finished = False

    @property
    def calls(self) -> int:
        """How many calls were announced so far."""
        return self._sink.calls

    def feed(self, text: str) -> Parsed:
        if text:
            self._reader.feed(text)
        return self._sink.take()

    def finish(self) -> Parsed:
        if not self._finished:
            self._finished = True
            self._reader.finish()
            if self._sink.dropped:
                logger.info("parallel_tool_calls is false: %d further call(s) were not returned", self._sink.dropped)
        return self._sink.take()


# Constrained decoding: the shape of one call in a format, for engines with JSON-schema grammars (llama.cpp).
_CALL_SHAPES = {
    "hermes": ("<tool_call>\n", "arguments", "\n</tool_call>"),
    "llama3": ("", "parameters", ""),
    "mistral": ("[TOOL_CALLS][", "arguments", "]"),
}


def forced_call(
    tools: list[dict[str, Any]], tool_choice: Any, fmt: str | None
) -> tuple[str, dict[str, Any], str] | None:
    """For ``tool_choice`` "required" or a named function: ``(prefix, schema, suffix)`` of the text that is one call.

    The schema is the call object (``{"name": const, "arguments": the tool's parameters}``, one alternative per tool
    that may be called); an engine builds a grammar of ``prefix``, the schema's JSON and ``suffix``, and the format's
    parser reads the result. None when the format has no such shape here (deepseek, harmony: their markers are
    special tokens).
    """
    shape = _CALL_SHAPES.get(canonical(fmt or "hermes") or "")
    if shape is None:
        return None
    prefix, key, suffix = shape
    names = None
    if isinstance(tool_choice, dict):
        names = {tool_choice["function"]["name"]}
    alternatives = []
    for tool in tools:
        function = tool["function"]
        if names is not None and function["name"] not in names:
            continue
        parameters = function.get("parameters") or {"type": "object", "properties": {}}
        alternatives.append(
            {
                "type": "object",
                "properties": {"name": {"const": function["name"]}, key: parameters},
                "required": ["name", key],
            }
        )
    schema = alternatives[0] if len(alternatives) == 1 else {"anyOf": alternatives}
    return prefix, schema, suffix


def parse_whole(fmt: str, text: str) -> tuple[str, str, list[dict[str, Any]]]:
    """A whole output's content, reasoning and calls (OpenAI call dicts)."""
    parser = ToolCallParser(fmt)
    parts = [parser.feed(text), parser.finish()]
    calls: dict[int, dict[str, Any]] = {}
    for part in parts:
        for fragment in part.tool_calls:
            call = calls.setdefault(
                fragment["index"], {"id": None, "type": "function", "function": {"name": "", "arguments": ""}}
            )
            call["id"] = fragment.get("id") or call["id"]
            call["function"]["name"] += fragment["function"].get("name") or ""
            call["function"]["arguments"] += fragment["function"].get("arguments") or ""
    return (
        "".join(p.text for p in parts),
        "".join(p.reasoning for p in parts),
        [calls[i] for i in sorted(calls)],
    )


__all__ = [
    "FORMATS",
    "JsonRepair",
    "Parsed",
    "TaggedFormat",
    "ToolCallParser",
    "canonical",
    "delegated_format",
    "detect_format",
    "forced_call",
    "format_names",
    "parse_whole",
    "repair_json",
    "template_supports_tools",
]
