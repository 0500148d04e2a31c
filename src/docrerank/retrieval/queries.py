"""Queries to retrieve for: a JSONL file (``{query_id?, query, page_id?}`` a line; ``page_id`` is the query's
known positive page, unless the line says ``"answerable": false``, as a labeled pairs file does for pages
that do not answer it), or a generation run directory (its selected positives and rephrasings)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from docrerank.errors import InputError
from docrerank.pages import PageStore

__all__ = ["RetrievalQuery", "read_queries"]


@dataclass
class RetrievalQuery:
    query_id: str
    text: str
    positives: list[str] = field(default_factory=list)
    rephrasing_of: str | None = None  # the original query's id, for a run's rephrased positives


def _from_run(run_dir: Path) -> list[dict]:
    from docrerank.pipeline.export import read_selected  # the pipeline is only needed for run directories

    return [
        {"query_id": r.query_id, "query": r.text, "page_id": r.page_id, "rephrasing_of": r.parent_id}
        for r in read_selected(run_dir)
        if r.kind in ("positive", "rephrased")
    ]


def read_queries(path: Path, store: PageStore) -> tuple[list[RetrievalQuery], list[InputError]]:
    """The usable queries, and an error (with its fix) for each one that is not."""
    path = Path(path)
    errors: list[InputError] = []
    if path.is_dir():
        items = [(f"{path}#{row['query_id']}", row) for row in _from_run(path)]
    else:
        items = []
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                row = None
            if not isinstance(row, dict):
                errors.append(InputError(f"{path}:{number}", "not a JSON object", 'write {"query": ...} a line'))
                continue
            items.append((f"{path}:{number}", {"query_id": f"q{number}", **row}))
    queries = []
    for item, row in items:
        text = str(row.get("query") or "").strip()
        page_id = row.get("page_id")
        if not text:
            errors.append(InputError(item, "empty query", "give the query text or drop the line"))
        elif page_id is not None and str(page_id) not in store:
            errors.append(InputError(item, f"page {page_id!r} is not in the store", "ingest its document first"))
        else:
            positives = [str(page_id)] if page_id is not None and row.get("answerable") is not False else []
            query_id = str(row.get("query_id") or row.get("id"))
            queries.append(RetrievalQuery(query_id, text, positives, row.get("rephrasing_of")))
    return queries, errors
