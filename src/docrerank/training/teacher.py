"""Teacher scores: every (query, page) pair of a training set scored by a teacher reranker (``docrerank label``).

The teacher is typically the zero-shot LLM reranker (``rerankers.zero_shot``, P(True) of a True/False prompt)
over the embedded Qwen2.5-Coder-1.5B: a good but slow judge, whose scores a fast student then learns
(``docrerank train --targets teacher|both``, ``training.losses``). Any ``Reranker`` can teach.

- Pairs are the positive and every negative of every group, de-duplicated, and scored ordered by page, so a
  chat model's backend evaluates a page's prompt prefix (page text first, then the query) once for all the
  queries on it; chunks of ``chunk`` pairs go to the teacher at a time.
- Scores are cached in SQLite (``evaluation.runner.score_pairs``, as evaluation does) under the teacher's
  identity, by query text and page key (the page id and a digest of its text), chunk by chunk as they come: a
  killed run keeps what it scored and a rerun scores only the rest. A pair the teacher could not score (a
  non-finite score) is not cached, so a rerun retries it.
- Bad input does not stop the run: a page without text (for a teacher that reads text) is reported once, as an
  ``InputError`` with the fix, and its pairs keep no teacher score (None); so do pairs the teacher failed on.

``label_dataset`` writes the labeled set as ``OUT/examples.jsonl``: one row per group in the form of a
mixture's ``examples.jsonl`` (``read_groups`` reads it, keeping every hard label: the positive, its negative
queries and negative pages) with ``teacher_score`` (the positive's), ``negative_query_teacher_scores`` and
``negative_page_teacher_scores`` beside them; ``OUT/label.json`` records the teacher and the counts and
``OUT/teacher-scores.sqlite`` is the cache.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from docrerank.errors import InputError
from docrerank.evaluation.runner import ChunkRunner, ScoreCache, score_pairs
from docrerank.pages import PageStore
from docrerank.pages.content import PageContent
from docrerank.pages.store import atomic_write_bytes
from docrerank.rerankers.base import Reranker
from docrerank.training.data import TrainingGroup, read_groups

__all__ = ["EXAMPLES", "LabelSummary", "label_dataset", "label_groups", "teacher_identity"]

EXAMPLES = "examples.jsonl"
SUMMARY = "label.json"
CACHE = "teacher-scores.sqlite"


def teacher_identity(teacher: Reranker) -> str:
    """What decides a teacher's scores, as a short digest: for an LLM reranker its backend's identity (model
    file, context) and its prompt (template fingerprint, page length, image or text); else its kind and
    settings."""
    parts: dict[str, Any] = {"kind": teacher.kind, "settings": teacher.settings()}
    backend = getattr(teacher, "backend", None)
    if teacher.kind == "llm" and backend is not None:
        from docrerank.prompts.library import load_prompt

        settings = teacher.settings()
        parts["settings"] = {
            "backend": backend.identity(),
            "template": load_prompt(teacher.template).fingerprint,  # type: ignore[attr-defined]
            "use_image": settings["use_image"],
            "max_page_chars": settings["max_page_chars"],
        }
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def page_key(page: PageContent) -> str:
    """The cache's name for a page: its id and a digest of its text (an edited file's line is another page)."""
    return f"{page.page_id}#{hashlib.sha256(page.text.encode()).hexdigest()[:12]}"


@dataclass
class LabelSummary:
    """What a labeling did: groups and distinct pairs, how many came from the cache, were scored, or are left
    without a score (bad pages, teacher failures), and the errors to report."""

    teacher: str
    groups: int = 0
    pairs: int = 0
    cached: int = 0
    scored: int = 0
    unscored: int = 0
    seconds: float = 0.0
    errors: list[InputError] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        counts = {k: v for k, v in self.__dict__.items() if k != "errors"}
        return {**counts, "errors": [{"item": e.item, "reason": e.reason, "fix": e.fix} for e in self.errors]}


def _pairs(group: TrainingGroup) -> list[tuple[str, PageContent]]:
    """The group's pairs in the order of its teacher scores: positive, negative queries, negative pages."""
    return [(group.query, group.page), *((q, group.page) for q in group.negative_queries)] + [
        (group.query, p) for p in group.negative_pages
    ]


def label_groups(
    groups: Iterable[TrainingGroup],
    teacher: Reranker,
    cache: ScoreCache,
    identity: str | None = None,
    chunk: int = 16,
    progress: Callable[[int, int], None] = lambda done, total: None,
    run_chunks: ChunkRunner | None = None,
) -> tuple[list[TrainingGroup], LabelSummary]:
    """``groups`` with the teacher's score of every pair (see the module docstring); ``progress(done, total)``
    counts distinct pairs settled. ``identity`` names the teacher in the cache (default ``teacher_identity``);
    ``run_chunks`` scores the chunks (default: in turn here; ``score_chunks_on_ray`` on a Ray cluster)."""
    started = time.perf_counter()
    groups = list(groups)
    identity = identity or teacher_identity(teacher)
    summary = LabelSummary(teacher=identity, groups=len(groups))
    pages: dict[str, PageContent] = {}
    wanted: dict[tuple[str, str], None] = {}
    for group in groups:
        for query, page in _pairs(group):
            key = page_key(page)
            pages.setdefault(key, page)
            wanted[query, key] = None
    summary.pairs = len(wanted)
    textless = {key for key, page in pages.items() if "text" in teacher.uses and not page.text.strip()}
    for key in sorted(textless):
        summary.errors.append(
            InputError(
                f"page {pages[key].page_id}",
                "has no text, so the teacher cannot read it (its pairs keep no teacher score)",
                "ingest it with OCR (--ocr auto), or label with a teacher that reads page images",
            )
        )
    known = cache.scores(identity)
    summary.cached = sum(pair in known for pair in wanted)
    readable = [pair for pair in wanted if pair[1] not in textless]
    done = len(wanted) - len(readable)  # a textless page's pairs are settled at once

    def advance(n: int) -> None:
        nonlocal done
        done += n
        progress(done, len(wanted))

    progress(done, len(wanted))
    fresh = score_pairs(teacher, identity, readable, lambda key, _image: pages[key], cache, advance, chunk, run_chunks)
    scores = {pair: score for pair, score in fresh.items() if math.isfinite(score)}
    summary.scored = len(scores) - summary.cached
    for (query, key), score in fresh.items():
        if not math.isfinite(score):
            summary.errors.append(
                InputError(
                    f"page {pages[key].page_id}, query {query!r}",
                    "the teacher could not score it (see the log)",
                    "rerun with the same --out: pairs without a score are retried",
                )
            )
    summary.unscored = summary.pairs - len(scores)
    labeled = []
    for group in groups:
        values = [scores.get((query, page_key(page))) for query, page in _pairs(group)]
        queries = len(group.negative_queries)
        labeled.append(
            replace(
                group,
                teacher_score=values[0],
                negative_query_teacher_scores=tuple(values[1 : 1 + queries]),
                negative_page_teacher_scores=tuple(values[1 + queries :]),
            )
        )
    summary.seconds = round(time.perf_counter() - started, 2)
    return labeled, summary


def _image_path(store: PageStore | None, page: PageContent) -> str | None:
    return str(store.image_path(store[page.page_id])) if store is not None and page.page_id in store else None


def _row(group: TrainingGroup, store: PageStore | None) -> dict[str, Any]:
    """A group as a mixture example (``read_groups`` reads it back), with its teacher scores."""
    kinds = [kind for kind, items in (("queries", group.negative_queries), ("pages", group.negative_pages)) if items]
    return {
        "query": group.query,
        "page_id": group.page.page_id,
        "doc_id": group.doc_id,
        "page_text": group.page.text,
        "image_path": _image_path(store, group.page),
        "negative_queries": [list(group.negative_queries)],
        "negative_page_ids": [p.page_id for p in group.negative_pages],
        "negative_page_texts": [p.text for p in group.negative_pages],
        "negative_image_paths": [_image_path(store, p) for p in group.negative_pages],
        "negative_kind": "+".join(kinds) or "none",
        "teacher_score": group.teacher_score,
        "negative_query_teacher_scores": list(group.negative_query_teacher_scores),
        "negative_page_teacher_scores": list(group.negative_page_teacher_scores),
    }


def label_dataset(
    data: str | Path,
    out: str | Path,
    teacher: Reranker,
    store: PageStore | None = None,
    identity: str | None = None,
    chunk: int = 16,
    progress: Callable[[int, int], None] = lambda done, total: None,
    details: dict[str, Any] | None = None,
    run_chunks: ChunkRunner | None = None,
) -> LabelSummary:
    """Score every pair of the training set ``data`` (any form ``read_groups`` reads; an export's
    queries.jsonl needs its page ``store``, which also gives page image paths) with ``teacher`` and write the
    labeled set into the folder ``out`` (see the module docstring). Rerun with the same ``out`` to resume.

    Rows whose page is not in ``store`` are reported in the summary's errors and left out; the rest goes on.
    ``details`` (e.g. the teacher's config) is recorded in ``label.json``; ``run_chunks``: as for
    ``label_groups``.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    skipped: list[InputError] = []
    groups = read_groups(data, store, images=False, skipped=skipped)
    labeled, summary = label_groups(groups, teacher, ScoreCache(out / CACHE), identity, chunk, progress, run_chunks)
    summary.errors[:0] = skipped
    atomic_write_bytes(out / EXAMPLES, "".join(json.dumps(_row(g, store)) + "\n" for g in labeled).encode())
    document = {"data": str(data), "teacher_kind": teacher.kind, **(details or {}), **summary.as_dict()}
    (out / SUMMARY).write_text(json.dumps(document, indent=2, default=str) + "\n")
    return summary
