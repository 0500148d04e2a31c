"""Existing positives given to a run instead of generated ones (``positives.given``: a JSONL file).

A run with given positives trusts them (no verification) and starts at negative generation; the negatives
a line brings (e.g. a ColHNQue row's) join the generated candidates and are verified like them.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from docrerank.pages import PageStore
from docrerank.pipeline.records import QueryRecord, Rejection, query_id

__all__ = ["MAX_GIVEN_QUERY_CHARS", "GivenQueries", "read_given_positives"]


@dataclass
class GivenQueries:
    """Existing positives by page, their existing negatives by positive, and the lines that were unusable."""

    positives: dict[str, list[QueryRecord]]
    negatives: dict[str, list[str]]
    rejected: list[Rejection]


# a given query longer than this is not a question (and would overflow a small model's context)
MAX_GIVEN_QUERY_CHARS = 2000


def _given_line_problem(item: object) -> str | None:
    """Why a line of given positives is not ``{page_id: str, query: str, answer?: str, negatives?: [str]}``."""
    if not isinstance(item, dict):
        return "not a JSON object with page_id, query (and negatives as a list of strings)"
    for key in ("page_id", "query"):
        if not isinstance(item.get(key), str):
            got = "missing" if key not in item else f"a {type(item[key]).__name__}"
            return f"{key} must be a string ({got}): write it as a JSON string"
    if not isinstance(item.get("answer") or "", (str, int, float)):
        return "answer must be a string"
    negatives = item.get("negatives") or []
    if not isinstance(negatives, list) or not all(isinstance(q, str) for q in negatives):
        return "negatives must be a list of strings"
    text = item["query"].strip()
    if not text:
        return "empty query"
    if not any(ch.isalnum() for ch in text):
        return "the query has no letter or digit: write it as text"
    if len(text) > MAX_GIVEN_QUERY_CHARS:
        return f"the query has {len(text)} characters, more than {MAX_GIVEN_QUERY_CHARS}: give a question"
    return None


def read_given_positives(path: Path, store: PageStore) -> GivenQueries:
    """Existing positives from a JSONL file (``{page_id, query, answer?, negatives?}`` a line).

    ``negatives`` (a list of query texts, e.g. a ColHNQue row's negative queries) join the positive's
    negative candidates and are filtered and verified like the generated ones (generator ``given``). A line
    that is not of that shape, names a page the store lacks or a page without text (the verifier reads page
    text) is rejected with its line number and the fix; the other lines go on.
    """
    by_page: dict[str, list[QueryRecord]] = defaultdict(list)
    negatives: dict[str, list[str]] = {}
    rejected: list[Rejection] = []
    for number, line in enumerate(Path(path).read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError:
            item = None
        problem = _given_line_problem(item)
        if problem:
            page_id = item.get("page_id") if isinstance(item, dict) and isinstance(item.get("page_id"), str) else None
            rejected.append(Rejection(stage="positives", reason=f"{path}:{number}: {problem}", page_id=page_id))
            continue
        page_id, text = item["page_id"], item["query"].strip()
        given_negatives = [q.strip() for q in item.get("negatives") or [] if q.strip()]
        if page_id not in store:
            reason = f"{path}:{number}: page {page_id!r} is not in the store; ingest its document first"
            rejected.append(Rejection(stage="positives", reason=reason, page_id=page_id))
        elif not store.get(page_id).text.strip():
            reason = f"{path}:{number}: page {page_id} has no text; ingest its document with OCR (--ocr auto)"
            rejected.append(Rejection(stage="positives", reason=reason, page_id=page_id))
        else:
            record = QueryRecord(
                query_id=query_id(page_id, "positive", text),
                page_id=page_id,
                kind="positive",
                text=text,
                answer=(str(item.get("answer") or "").strip() or None),
                generator="given",
            )
            by_page[page_id].append(record)
            negatives.setdefault(record.query_id, []).extend(given_negatives)
    return GivenQueries(by_page, negatives, rejected)
