"""Reranking evaluation on held-out documents, run before, during and after training.

Each held-out group becomes a query with candidates: its positive page, its negative pages, and the
positive pages of other held-out groups (seeded, up to ``depth`` candidates, in a seeded order that says
nothing of their labels), the same kind of list a first stage hands a reranker. Metrics come from
ir-measures through ``evaluation.metrics`` (ranks, ties kept in candidate order, as ``evaluate`` does):
nDCG@5 (the paper's) and RR@10, with each query's nDCG@5 kept for paired tests. The generated negatives are
measured apart, as ``query_contrast``: the share of (positive query, negative query) on the same page where
the positive scores higher, which page ranking cannot show. ``first_stage`` measures a retriever's order of
the same candidates: the baseline a trained reranker must beat.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Sequence
from typing import Any

from docrerank.evaluation.metrics import mean, per_query
from docrerank.pages.content import PageContent
from docrerank.rerankers.base import Reranker
from docrerank.training.data import TrainingGroup

__all__ = ["HeldOutEvaluator", "MEASURES"]

log = logging.getLogger(__name__)
MEASURES = ("nDCG@5", "RR@10")


class HeldOutEvaluator:
    """Scores a reranker (``__call__``) or a first stage (``first_stage``) on fixed held-out candidates; both
    return ``{metric: value, "query_contrast", "queries", "per_query": {query id: nDCG@5}}``."""

    def __init__(self, groups: list[TrainingGroup], depth: int = 20, seed: int = 0):
        self.groups = groups
        pool = list({g.page.page_id: g.page for g in groups}.values())
        self.candidates: list[list[PageContent]] = []
        for index, group in enumerate(groups):
            own = [group.page, *group.negative_pages]
            known = {p.page_id for p in own}
            others = [p for p in pool if p.page_id not in known]
            rng = random.Random(f"{seed}:{index}")
            pages = own + rng.sample(others, min(len(others), max(0, depth - len(own))))
            rng.shuffle(pages)  # ties keep this order: it must not put the positive first
            self.candidates.append(pages)

    def pairs(self) -> list[tuple[str, PageContent]]:
        """What is scored: each query with its candidates, then its negative queries with its page."""
        pairs = []
        for group, pages in zip(self.groups, self.candidates, strict=True):
            pairs += [(group.query, page) for page in pages] + [(q, group.page) for q in group.negative_queries]
        return pairs

    def __call__(self, reranker: Reranker) -> dict[str, Any]:
        pairs = self.pairs()
        return self.measure(reranker.score(pairs) if pairs else [])

    def first_stage(self, spec: str, model: str | None = None) -> dict[str, Any]:
        """The same measures for a retriever's scores (``bm25``, ``dense:embeddinggemma``, ...), its index built
        over the candidate pages alone."""
        from docrerank.evaluation.benchmark import TextCorpus
        from docrerank.retrieval import make_retriever

        pages = {page.page_id: page for pages in self.candidates for page in pages}  # each group's own page too
        retriever = make_retriever(spec, TextCorpus(list(pages.values())), model)
        pairs = self.pairs()
        return self.measure(retriever.score([q for q, _ in pairs], [p.page_id for _, p in pairs]) if pairs else [])

    def measure(self, scores: Sequence[float]) -> dict[str, Any]:
        """The measures of scores aligned with ``pairs()``."""
        run, qrels, wins, contrasts = {}, {}, 0, 0
        cursor = 0
        for index, (group, pages) in enumerate(zip(self.groups, self.candidates, strict=True)):
            query_id = f"q{index}"
            page_scores = [float(s) for s in scores[cursor : cursor + len(pages)]]
            query_scores = scores[cursor + len(pages) : cursor + len(pages) + len(group.negative_queries)]
            cursor += len(pages) + len(group.negative_queries)
            qrels[query_id] = {group.page.page_id: 1}
            scored = sorted(zip(pages, page_scores, strict=True), key=lambda item: -item[1])  # stable
            run[query_id] = [(page.page_id, score) for page, score in scored]
            own = page_scores[[p.page_id for p in pages].index(group.page.page_id)]
            wins += sum(own > s for s in query_scores)
            contrasts += len(query_scores)
        values = per_query(run, qrels, list(run), MEASURES)
        result: dict[str, Any] = {measure: mean(by_query) for measure, by_query in values.items()}
        result["query_contrast"] = wins / contrasts if contrasts else float("nan")
        result["queries"] = len(self.groups)
        result["per_query"] = values["nDCG@5"]
        return result
