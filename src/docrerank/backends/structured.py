"""Structured (JSON) output: parse what a model wrote, repairing the usual slips.

Servers that enforce a JSON schema return clean JSON; the rest (and small local models) wrap it in code
fences, add a sentence before it, leave a trailing comma, write Python's ``None`` or a comment.
``parse_json_output`` finds the JSON (a fenced block, else the first balanced ``{...}`` / ``[...]``) and
has ``json-repair`` fix the slips (it reads strings as strings, so nothing inside one is ever edited).

Two things it never accepts, because the result would look fine and be wrong:

- output cut off before its JSON closes (``max_tokens``): json-repair would complete it, half filled; here
  the raw text must close every bracket it opens, or it is "unterminated JSON";
- a repair that invents or drops content (a missing value filled with "", a stray bracket skipped): only
  the repairs in ``_ROUTINE_REPAIRS`` pass, the rest are "invalid JSON".

When it cannot parse, the caller records the raw text with the reason, never a silent None.
"""

from __future__ import annotations

import json
import re
from typing import Any

import json_repair

from docrerank.backends.messages import ChatRequest, Generation

__all__ = ["JsonParseError", "parse_json_output", "parse_structured"]

_FENCE = re.compile(r"```(?:json|JSON)?\s*(.*?)```", re.DOTALL)
_OPENERS = {"{": "}", "[": "]"}
# What json-repair reports while it fixes a slip that keeps every key and value the model wrote (matched as
# the start of its log messages). A repair it reports otherwise (a value filled in, a bracket or a stray
# character skipped) makes the output invalid.
_ROUTINE_REPAIRS = (
    "Found line comment",
    "Found block comment",
    "Converted unquoted Python",
    "While parsing a string, we found a literal instead of a quote",  # an unquoted key or a single quote
    "While parsing a string missing the left delimiter in object key context",
    "While parsing a string, we missed the closing quote",  # ... of such a key (cut-off strings are refused first)
    "While parsing a string, we found a misplaced quote",  # an inner quote left unescaped: kept in the string
)


class JsonParseError(ValueError):
    """The output is not JSON, even after repair."""


def _spans(text: str) -> tuple[list[str], bool]:
    """The top-level balanced ``{...}`` / ``[...]`` spans of ``text`` in order (brackets inside strings do
    not count), and whether the text ends inside one that never closed (cut off)."""
    spans: list[str] = []
    stack: list[str] = []
    start = 0
    in_string = escaped = False
    for i, ch in enumerate(text):
        if not stack:
            if ch in _OPENERS:
                stack, start = [_OPENERS[ch]], i
            continue
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in _OPENERS:
            stack.append(_OPENERS[ch])
        elif ch == stack[-1]:
            stack.pop()
            if not stack:
                spans.append(text[start : i + 1])
    return spans, bool(stack)


def _repaired(span: str) -> Any:
    """``span`` parsed, with json-repair's routine repairs; raises ``JsonParseError`` otherwise."""
    try:
        return json.loads(span)
    except json.JSONDecodeError as exc:
        first = exc.msg
    value, log = json_repair.repair_json(span, return_objects=True, logging=True)
    unusual = [entry["text"] for entry in log if not entry["text"].startswith(_ROUTINE_REPAIRS)]
    if unusual or not isinstance(value, (dict, list)):
        raise JsonParseError(f"invalid JSON ({first})")
    return value


def parse_json_output(text: str) -> Any:
    """Decode JSON from model output; raise ``JsonParseError`` saying what was wrong."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        pass
    spans, cut_off = _spans(text)
    if cut_off:  # opened but never closed: typically cut off by max_tokens; never completed here
        raise JsonParseError("unterminated JSON (the output may have been cut off)")
    fenced = [span for match in _FENCE.finditer(text) for span in _spans(match.group(1))[0][:1]]
    candidates = list(dict.fromkeys(fenced + spans[:1]))
    if not candidates:
        raise JsonParseError("no JSON object found")
    failure = None
    for candidate in candidates:
        try:
            return _repaired(candidate)
        except JsonParseError as exc:
            failure = failure or exc
    raise failure


def parse_structured(request: ChatRequest, result: Generation) -> Generation:
    """Decode the JSON of a structured request into ``result.parsed``, or record why it failed."""
    if request.json_schema is None or result.error is not None:
        return result
    try:
        result.parsed = parse_json_output(result.text)
    except JsonParseError as exc:
        result.error = f"structured output: {exc}; raw text kept"
        result.output_error = True
    return result
