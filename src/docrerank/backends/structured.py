"""Structured (JSON) output: parse what a model wrote, repairing the usual slips.

Servers that enforce a JSON schema return clean JSON; the rest (and small local models) wrap it in code
fences, add a sentence before it, or leave a trailing comma. ``parse_json_output`` undoes those; when it
cannot, the caller records the raw text with the reason, never a silent None.
"""

from __future__ import annotations

import json
import re
from typing import Any

from docrerank.backends.messages import ChatRequest, Generation

__all__ = ["JsonParseError", "parse_json_output", "parse_structured"]

_FENCE = re.compile(r"```(?:json|JSON)?\s*(.*?)```", re.DOTALL)
_TRAILING_COMMA = re.compile(r",\s*([}\]])")


class JsonParseError(ValueError):
    """The output is not JSON, even after repair."""


def _balanced_span(text: str) -> str | None:
    """The first balanced {...} or [...] span, skipping brackets inside strings."""
    start = next((i for i, ch in enumerate(text) if ch in "{["), None)
    if start is None:
        return None
    closing = {"{": "}", "[": "]"}
    stack: list[str] = []
    in_string = escaped = False
    for i in range(start, len(text)):
        ch = text[i]
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
            continue
        if ch == '"':
            in_string = True
        elif ch in closing:
            stack.append(closing[ch])
        elif stack and ch == stack[-1]:
            stack.pop()
            if not stack:
                return text[start : i + 1]
    return None


def parse_json_output(text: str) -> Any:
    """Decode JSON from model output; raise ``JsonParseError`` saying what was wrong."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as first:
        candidates = [match.group(1) for match in _FENCE.finditer(text)]
        span = _balanced_span(text)
        if span:
            candidates.append(span)
        for candidate in candidates:
            for attempt in (candidate, _TRAILING_COMMA.sub(r"\1", candidate)):
                try:
                    return json.loads(attempt)
                except json.JSONDecodeError:
                    continue
        if candidates:
            reason = f"invalid JSON ({first.msg})"
        elif any(ch in "{[" for ch in text):  # opened but never closed: typically cut off by max_tokens
            reason = "unterminated JSON (the output may have been cut off)"
        else:
            reason = "no JSON object found"
        raise JsonParseError(reason) from None


def parse_structured(request: ChatRequest, result: Generation) -> Generation:
    """Decode the JSON of a structured request into ``result.parsed``, or record why it failed."""
    if request.json_schema is None or result.error is not None:
        return result
    try:
        result.parsed = parse_json_output(result.text)
    except JsonParseError as exc:
        result.error = f"structured output: {exc}; raw text kept"
    return result
