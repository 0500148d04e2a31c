"""Verifying given (page, query) pairs: the pipeline's verification stage on its own (``docrerank verify``).

A pairs file is JSON Lines, one ``{page_id, query}`` a line, optionally with ``id``, the label
``answerable`` (for ``evaluate-verifier``), and ``changed_from`` / ``changed_to`` / ``property`` for an
edited query (so the evidence check can run); any other keys are carried through to the result. Each pair
becomes a ``QueryRecord`` and goes through ``Verifier.judge`` exactly as the pipeline's own queries do, with
the backend, prompts, threshold and page cut of the config's verification section.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from docrerank.backends import Backend, ResponseCache, load_backend
from docrerank.errors import InputError
from docrerank.pages import PageStore
from docrerank.pipeline.config import PipelineConfig
from docrerank.pipeline.records import Evidence, QueryRecord, query_id
from docrerank.pipeline.verify import Expectation, Judgement, Verifier

__all__ = ["PairInput", "VerifiedPair", "parse_pairs", "read_pairs", "verifier_for", "verify_pairs", "write_results"]


class PairInput(BaseModel):
    """One line of a pairs file."""

    model_config = ConfigDict(extra="allow")

    page_id: str
    query: str
    id: str | None = None
    answerable: bool | None = Field(None, description="the label, when known")
    property: str | None = None
    changed_from: str | None = None
    changed_to: str | None = None


class PromptVerdict(BaseModel):
    template: str
    p_yes: float
    says_yes: bool


class VerifiedPair(BaseModel):
    """What the verifier said about one pair (a line of ``docrerank verify``'s output)."""

    model_config = ConfigDict(extra="allow")

    id: str
    page_id: str
    query: str
    answerable: bool | None = Field(None, description="the label, copied from the input")
    prompts: list[PromptVerdict]
    verdict: str = Field(description="answerable (every prompt yes), unanswerable (every prompt no) or undecided")
    agree: bool
    expect: Expectation
    accepted: bool = Field(description="accepted as expected (as a negative: unanswerable and no evidence veto)")
    reason: str | None = None
    evidence: Evidence | None = None
    errors: list[str] = Field(default_factory=list)


def read_pairs(path: Path, store: PageStore) -> tuple[list[PairInput], list[InputError]]:
    """The usable pairs of a file, and an error (with its fix) for each line that is not."""
    return parse_pairs(Path(path).read_text().splitlines(), str(path), store)


def parse_pairs(lines: Iterable[str], source: str, store: PageStore) -> tuple[list[PairInput], list[InputError]]:
    """``read_pairs`` on lines already in memory; errors name ``source:LINE``."""
    pairs, errors = [], []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        item = f"{source}:{number}"
        try:
            pair = PairInput.model_validate_json(line)
        except ValidationError as exc:
            reason = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'line'}: {e['msg']}" for e in exc.errors())
            errors.append(InputError(item, reason, 'write one JSON object a line: {"page_id": ..., "query": ...}'))
            continue
        if not pair.query.strip():
            errors.append(InputError(item, "empty query", "give the query text or drop the line"))
        elif pair.page_id not in store:
            errors.append(InputError(item, f"page {pair.page_id!r} is not in the store", "ingest its document first"))
        elif not store[pair.page_id].text.strip():
            errors.append(InputError(item, f"page {pair.page_id!r} has no text", "re-ingest it with OCR (--ocr auto)"))
        else:
            pairs.append(pair.model_copy(update={"id": pair.id or f"line{number}"}))
    return pairs, errors


def verifier_for(config: PipelineConfig, expect: Expectation, cache: ResponseCache | Path | None) -> Verifier:
    """The verifier of the config's positive (``answerable``) or negative (``unanswerable``) verification."""
    settings = config.negatives_verified if expect == "unanswerable" else config.positives_verified
    backend: Backend = load_backend(config.backends[settings.backend], cache=cache)
    return Verifier(backend, settings, config.max_page_chars)


def _record(pair: PairInput, expect: Expectation) -> QueryRecord:
    kind = "negative" if expect == "unanswerable" else "positive"
    return QueryRecord(
        query_id=query_id(pair.page_id, kind, pair.query),
        page_id=pair.page_id,
        kind=kind,
        text=pair.query.strip(),
        generator="given",
        property=pair.property,
        changed_from=pair.changed_from,
        changed_to=pair.changed_to,
    )


def _result(pair: PairInput, judgement: Judgement, verifier: Verifier, expect: Expectation) -> VerifiedPair:
    verdict = judgement.verdict
    threshold = verifier.settings.threshold
    prompts = [
        PromptVerdict(template=t.name, p_yes=p, says_yes=p >= threshold)
        for t, p in zip(verifier.templates, verdict.p_yes, strict=False)
    ]
    combined = "answerable" if verdict.answerable else "unanswerable" if verdict.unanswerable else "undecided"
    carried = {k: v for k, v in (pair.model_extra or {}).items() if k not in VerifiedPair.model_fields}
    return VerifiedPair(
        **carried,
        id=pair.id,
        page_id=pair.page_id,
        query=pair.query,
        answerable=pair.answerable,
        prompts=prompts,
        verdict=combined,
        agree=verdict.agree,
        expect=expect,
        accepted=judgement.accepted,
        reason=judgement.reason,
        evidence=judgement.evidence,
        errors=verdict.errors,
    )


def page_batches(pairs: Sequence[PairInput], batch_pages: int) -> list[list[int]]:
    """The pairs' indices grouped by page, ``batch_pages`` pages a batch (a page's prefix evaluated once)."""
    by_page: dict[str, list[int]] = defaultdict(list)
    for index, pair in enumerate(pairs):
        by_page[pair.page_id].append(index)
    page_ids = sorted(by_page)
    return [
        [i for page_id in page_ids[start : start + batch_pages] for i in by_page[page_id]]
        for start in range(0, len(page_ids), batch_pages)
    ]


def verify_pairs(
    pairs: Sequence[PairInput],
    store: PageStore,
    verifier: Verifier,
    expect: Expectation,
    *,
    evidence_rejects: bool = True,
    batch_pages: int = 4,
    on_batch: Callable[[int], Any] | None = None,
) -> list[VerifiedPair]:
    """Judge every pair with every prompt, in input order. Pairs are sent grouped by page (``batch_pages`` pages a
    batch) so a page's prefix is evaluated once; each finished batch is in the response cache, so a rerun
    resumes."""
    results: list[VerifiedPair | None] = [None] * len(pairs)
    for batch in page_batches(pairs, batch_pages):
        judgements = verifier.judge(
            [(store[pairs[i].page_id], _record(pairs[i], expect)) for i in batch],
            expect,
            evidence_rejects=evidence_rejects,
            every_prompt=True,  # the results list each prompt's P(yes): evaluate-verifier reads them
        )
        for i, judgement in zip(batch, judgements, strict=True):
            results[i] = _result(pairs[i], judgement, verifier, expect)
        if on_batch is not None:
            on_batch(len(batch))
    return [r for r in results if r is not None]


def write_results(results: Sequence[VerifiedPair], path: Path) -> None:
    """One JSON object a line."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r.model_dump(mode="json")) + "\n" for r in results))
