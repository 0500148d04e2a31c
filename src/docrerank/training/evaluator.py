"""Reranking evaluation on held-out documents, run before, during and after training.

Each held-out group becomes a query with candidates: its positive page, its negative pages, and the
positive pages of other held-out groups (seeded, up to ``depth`` candidates), the same kind of list a
first stage hands a reranker. Metrics come from ir-measures: nDCG@5 (the paper's) and RR@10. The
generated negatives are measured apart, as ``query_contrast``: the share of (positive query, negative
query) on the same page where the positive scores higher, which page ranking cannot show.
"""

from __future__ import annotations

import logging
import random
from typing import Any

from docrerank.errors import import_optional
from docrerank.rerankers.base import Reranker
from docrerank.training.data import TrainingGroup

__all__ = ["HeldOutEvaluator", "MEASURES"]

log = logging.getLogger(__name__)
MEASURES = ("nDCG@5", "RR@10")


class HeldOutEvaluator:
    """Scores a reranker on fixed held-out candidates; ``__call__`` returns ``{metric: value}``."""

    def __init__(self, groups: list[TrainingGroup], depth: int = 20, seed: int = 0):
        self.groups = groups
        pool = list({g.page.page_id: g.page for g in groups}.values())
        self.candidates = []
        for index, group in enumerate(groups):
            own = [group.page, *group.negative_pages]
            known = {p.page_id for p in own}
            others = [p for p in pool if p.page_id not in known]
            extra = random.Random(f"{seed}:{index}").sample(others, min(len(others), max(0, depth - len(own))))
            self.candidates.append(own + extra)

    def __call__(self, reranker: Reranker) -> dict[str, Any]:
        ir_measures = import_optional("ir_measures", "train")
        pairs = []
        for group, pages in zip(self.groups, self.candidates, strict=True):
            pairs += [(group.query, page) for page in pages] + [(q, group.page) for q in group.negative_queries]
        scores = reranker.score(pairs) if pairs else []
        run, qrels, wins, contrasts = [], [], 0, 0
        cursor = 0
        for index, (group, pages) in enumerate(zip(self.groups, self.candidates, strict=True)):
            query_id = f"q{index}"
            page_scores = scores[cursor : cursor + len(pages)]
            query_scores = scores[cursor + len(pages) : cursor + len(pages) + len(group.negative_queries)]
            cursor += len(pages) + len(group.negative_queries)
            qrels.append(ir_measures.Qrel(query_id, group.page.page_id, 1))
            scored = zip(pages, page_scores, strict=True)
            run += [ir_measures.ScoredDoc(query_id, page.page_id, float(score)) for page, score in scored]
            wins += sum(page_scores[0] > s for s in query_scores)
            contrasts += len(query_scores)
        measures = [ir_measures.parse_measure(m) for m in MEASURES]
        result = {str(m): float(v) for m, v in ir_measures.calc_aggregate(measures, qrels, run).items()}
        result["query_contrast"] = wins / contrasts if contrasts else float("nan")
        result["queries"] = len(self.groups)
        return result
