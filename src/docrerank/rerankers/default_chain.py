"""The default reranker of `rerank` and `serve`: the chain that passed the declared test (README, "The declared
test, run"), with its student shipped in the package, so the default runs the weights that were tested.

A cascade: the EmbeddingGemma fusion fitted on the generated training set (`reworded` mixture, pulled toward
its start at 1) reorders the first stage's top ``DEPTH``, and the embedded 1.5B, reading the focused view of
each page, re-scores its top ``TOP``. The figures below are that test's (bench/data/declared-chain); they hold
for these settings over EmbeddingGemma's candidates.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

__all__ = ["DEPTH", "MEASURED", "PAGE_VIEW", "STUDENT", "TOP"]

STUDENT = Path(str(files("docrerank.rerankers") / "shipped" / "fusion-embeddinggemma-reworded-pull1"))
TOP = 3  # pages of the student's top the teacher re-scores
PAGE_VIEW = "focused"  # what the teacher reads of a page: the passages nearest the query
DEPTH = 10  # first-stage pages reranked per query
MEASURED = (
    "+0.059 NDCG@5 over EmbeddingGemma alone on the quality benchmark's 94 rephrased questions (p = 0.043), "
    "+0.029 on the originals, on EmbeddingGemma's top 10; ~0.57 pairs/s on 2 cores (~20 s a query)"
)
