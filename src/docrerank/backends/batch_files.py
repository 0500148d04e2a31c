"""The OpenAI Batch API file format: write requests as a JSONL file, read the results file back.

For large offline jobs on a hosted API (half price, 24 h turnaround) or any service that takes the same
format. Each request line carries a ``custom_id``; results come back in any order and are joined to the
requests by it. A missing or failed result is a recorded error for that request, never a silent gap.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from docrerank.backends.messages import ChatRequest, ChoiceRequest, ChoiceScores, Generation
from docrerank.backends.openai_http import (
    OpenAIConfig,
    chat_body,
    choice_body,
    generation_from_response,
    scores_from_response,
)
from docrerank.backends.structured import parse_structured
from docrerank.errors import DocrerankError

__all__ = ["read_batch_choice_results", "read_batch_results", "write_batch_requests"]

ENDPOINT = "/v1/chat/completions"


def _custom_ids(requests: Sequence[ChatRequest | ChoiceRequest]) -> list[str]:
    ids = [r.id if r.id is not None else f"request-{i}" for i, r in enumerate(requests)]
    if len(set(ids)) != len(ids):
        raise DocrerankError("requests for a batch file need distinct ids (custom_id); some repeat")
    return ids


def write_batch_requests(
    requests: Sequence[ChatRequest | ChoiceRequest], path: str | Path, config: OpenAIConfig
) -> list[str]:
    """Write one Batch API line per request; returns the custom ids (request ids, or ``request-N``)."""
    ids = _custom_ids(requests)
    lines = []
    for custom_id, request in zip(ids, requests, strict=True):
        body = choice_body(config, request) if isinstance(request, ChoiceRequest) else chat_body(config, request)
        lines.append(json.dumps({"custom_id": custom_id, "method": "POST", "url": ENDPOINT, "body": body}))
    Path(path).write_text("\n".join(lines) + "\n")
    return ids


def _results_by_id(path: str | Path) -> dict[str, dict]:
    by_id: dict[str, dict] = {}
    for number, line in enumerate(Path(path).read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
            by_id[item["custom_id"]] = item
        except (json.JSONDecodeError, KeyError, TypeError):
            raise DocrerankError(f"{path}:{number} is not a Batch API result line (JSON with custom_id)") from None
    return by_id


def _body_or_error(item: dict | None) -> tuple[dict | None, str | None]:
    if item is None:
        return None, "no result for this request in the results file"
    if item.get("error"):
        return None, f"batch error: {item['error']}"
    response = item.get("response") or {}
    if response.get("status_code") != 200:
        return None, f"HTTP {response.get('status_code')}: {json.dumps(response.get('body'))[:300]}"
    return response.get("body"), None


def read_batch_results(requests: Sequence[ChatRequest], ids: Sequence[str], path: str | Path) -> list[Generation]:
    """Generations for ``requests`` (in order) from a Batch API results file."""
    by_id = _results_by_id(path)
    results = []
    for request, custom_id in zip(requests, ids, strict=True):
        body, error = _body_or_error(by_id.get(custom_id))
        result = Generation(error=error) if body is None else generation_from_response(body)
        result = parse_structured(request, result)
        result.id = request.id
        results.append(result)
    return results


def read_batch_choice_results(
    requests: Sequence[ChoiceRequest], ids: Sequence[str], path: str | Path
) -> list[ChoiceScores]:
    """Choice scores for ``requests`` (in order) from a Batch API results file."""
    by_id = _results_by_id(path)
    results = []
    for request, custom_id in zip(requests, ids, strict=True):
        body, error = _body_or_error(by_id.get(custom_id))
        result = ChoiceScores(error=error) if body is None else scores_from_response(request.choices, body)
        result.id = request.id
        results.append(result)
    return results
