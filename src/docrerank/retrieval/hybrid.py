"""Hybrid retrieval: reciprocal rank fusion (Cormack et al., 2009) of any two retrievers.

A page scores ``sum over retrievers of 1 / (rrf_k + rank)`` (rank from 1; nothing from a retriever that
does not return it in its top ``depth``). Fusing ranks rather than scores needs no calibration between,
say, BM25's unbounded scores and cosine similarities; ``rrf_k = 60`` is the paper's constant.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from docrerank.retrieval.base import Retriever
from docrerank.retrieval.runs import Ranking

__all__ = ["HybridRetriever", "fuse"]


def fuse(rankings: Sequence[Ranking], rrf_k: int = 60) -> Ranking:
    """One ranking from several: reciprocal rank fusion, ties broken by page id."""
    scores: dict[str, float] = defaultdict(float)
    for ranking in rankings:
        for rank, (page_id, _) in enumerate(ranking, start=1):
            scores[page_id] += 1.0 / (rrf_k + rank)
    return sorted(scores.items(), key=lambda item: (-item[1], item[0]))


class HybridRetriever(Retriever):
    name = "hybrid"

    def __init__(self, first: Retriever, second: Retriever, rrf_k: int = 60, depth: int = 100):
        if first.store.root != second.store.root:
            raise ValueError("a hybrid retriever fuses two retrievers over the same page store")
        super().__init__(first.store)
        self.parts, self.rrf_k, self.depth = (first, second), rrf_k, depth

    def settings(self) -> dict[str, Any]:
        parts = [{"name": part.name, **part.settings()} for part in self.parts]
        return {"fusion": "rrf", "rrf_k": self.rrf_k, "depth": self.depth, "parts": parts}

    def indexes(self) -> list[Path]:
        return [folder for part in self.parts for folder in part.indexes()]

    def _fused(self, queries: Sequence[str], depth: int) -> list[Ranking]:
        per_part = [part.search(queries, depth) for part in self.parts]
        return [fuse(rankings, self.rrf_k) for rankings in zip(*per_part, strict=True)]

    def search(self, queries: Sequence[str], k: int) -> list[Ranking]:
        return [ranking[:k] for ranking in self._fused(queries, max(k, self.depth))]

    def score(self, queries: Sequence[str], page_ids: Sequence[str]) -> list[float]:
        """The fused score at the retriever's ``depth`` (0 for a page neither part returns that deep)."""
        rankings = self._fused(queries, self.depth)
        return [dict(ranking).get(page_id, 0.0) for ranking, page_id in zip(rankings, page_ids, strict=True)]
