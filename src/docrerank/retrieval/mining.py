"""Mining hard negative pages: the pages a retriever ranks high for a query that are not its answer.

For each (query, positive page): take the retriever's top ``top_n`` pages, leave out the query's known
positives, number the rest from 1 (so "rank 1-10" always means the ten best other pages, the paper's top
10), keep ranks ``rank_min..rank_max``, drop every candidate scoring at or above ``max_score_ratio`` times
the positive's own score (NV-Retriever's TopK-PercPos: a page the retriever likes nearly as much as the
answer is likely another answer), and sample ``negatives`` of the rest uniformly, seeded per query so a
query's sample does not depend on the others. The positive's score comes from the retriever even when the
positive ranks below ``top_n``; with a precomputed run, where it cannot, the query is skipped with a reason.

The verifier pass (``docrerank mine --verify``) asks the pipeline's positive verifier whether each mined page
answers the query: the share it accepts is the likely-false-negative rate of mining, by rank.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from pydantic import BaseModel, Field

from docrerank.pages.store import atomic_write_bytes
from docrerank.retrieval.queries import RetrievalQuery
from docrerank.retrieval.runs import Ranking

__all__ = [
    "MinedExample",
    "MinedNegative",
    "MiningSettings",
    "false_negative_rates",
    "mine",
    "read_mined",
    "write_mined",
]


class MiningSettings(BaseModel):
    top_n: int = Field(20, ge=1, description="pages retrieved per query")
    negatives: int = Field(3, ge=1, description="negatives sampled per (query, positive)")
    rank_min: int = Field(1, ge=1, description="best rank a negative may have (1 = the best other page)")
    rank_max: int = Field(10, ge=1, description="worst rank a negative may have")
    max_score_ratio: float | None = Field(
        0.95, gt=0, description="drop candidates scoring >= this times the positive's score (None: keep all)"
    )
    seed: int = 0


class MinedNegative(BaseModel):
    page_id: str
    rank: int = Field(description="rank among the retrieved pages that are not a known positive, from 1")
    score: float
    verdict: str | None = Field(None, description="the verifier's: answerable, undecided or unanswerable")
    p_yes: list[float] | None = Field(None, description="the verifier's P(yes) per prompt")

    @property
    def likely_false_negative(self) -> bool | None:
        """The verifier judged that this page answers the query."""
        return None if self.verdict is None else self.verdict == "answerable"


class MinedExample(BaseModel):
    """A query, its positive page, and the negative pages mined for it."""

    query_id: str
    query: str
    positive: str
    rephrasing_of: str | None = Field(None, description="for a rephrased positive, the original query's id")
    positive_rank: int | None = Field(description="the positive's rank in the retriever's top N (None: below)")
    positive_score: float | None
    negatives: list[MinedNegative]
    candidates: int = Field(description="retrieved pages in the rank range, known positives left out")
    dropped_by_threshold: int = 0
    skipped: str | None = Field(None, description="why no negative could be mined, if none was")


def mine(
    queries: Sequence[RetrievalQuery],
    rankings: Sequence[Ranking],
    positive_scores: Sequence[float | None],
    settings: MiningSettings,
) -> list[MinedExample]:
    """One example per query with a known positive page (its first); ``rankings`` and ``positive_scores``
    (that positive's score, None where unknown) are parallel to ``queries``."""
    examples = []
    for query, ranking, positive_score in zip(queries, rankings, positive_scores, strict=True):
        if not query.positives:
            continue
        positive, known = query.positives[0], set(query.positives)
        others = [(page_id, score) for page_id, score in ranking[: settings.top_n] if page_id not in known]
        in_range = [
            (rank, page_id, score)
            for rank, (page_id, score) in enumerate(others, start=1)
            if settings.rank_min <= rank <= settings.rank_max
        ]
        eligible, skipped = in_range, None
        if settings.max_score_ratio is not None:
            if positive_score is None:
                eligible, skipped = [], "the positive's score is unknown (it is not in the run's top N)"
            else:
                eligible = [c for c in in_range if c[2] < settings.max_score_ratio * positive_score]
        if not in_range:
            skipped = "no other page retrieved in the rank range"
        elif not eligible and skipped is None:
            skipped = f"every candidate scores at least {settings.max_score_ratio} x the positive's score"
        rng = random.Random(f"{settings.seed}:{query.query_id}:{positive}")
        chosen = sorted(rng.sample(eligible, min(settings.negatives, len(eligible))))
        positive_rank = next((rank for rank, (page_id, _) in enumerate(ranking, 1) if page_id == positive), None)
        examples.append(
            MinedExample(
                query_id=query.query_id,
                query=query.text,
                positive=positive,
                rephrasing_of=query.rephrasing_of,
                positive_rank=positive_rank,
                positive_score=positive_score,
                negatives=[MinedNegative(page_id=p, rank=r, score=s) for r, p, s in chosen],
                candidates=len(in_range),
                dropped_by_threshold=len(in_range) - len(eligible) if positive_score is not None else 0,
                skipped=None if chosen else skipped,
            )
        )
    return examples


def false_negative_rates(examples: Sequence[MinedExample]) -> dict:
    """Of the verified mined negatives: how many the verifier judged to answer the query, overall and by rank."""
    judged = [n for e in examples for n in e.negatives if n.verdict is not None]
    by_rank: dict[int, Counter] = {}
    for negative in judged:
        counts = by_rank.setdefault(negative.rank, Counter())
        counts["judged"] += 1
        counts[negative.verdict] += 1
    answerable = sum(n.verdict == "answerable" for n in judged)
    undecided = sum(n.verdict == "undecided" for n in judged)
    return {
        "judged": len(judged),
        "answerable": answerable,
        "undecided": undecided,
        "rate": answerable / len(judged) if judged else None,
        "rate_with_undecided": (answerable + undecided) / len(judged) if judged else None,
        "by_rank": {
            rank: {
                "judged": c["judged"],
                "answerable": c["answerable"],
                "undecided": c["undecided"],
                "rate": c["answerable"] / c["judged"],
            }
            for rank, c in sorted(by_rank.items())
        },
    }


def write_mined(examples: Sequence[MinedExample], path: Path) -> None:
    """One example a line (JSON), written atomically."""
    lines = "".join(json.dumps(e.model_dump(mode="json")) + "\n" for e in examples)
    atomic_write_bytes(Path(path), lines.encode())


def read_mined(path: Path) -> list[MinedExample]:
    """The examples of a mined set (``docrerank mine``'s ``mined.jsonl``, or the folder holding it)."""
    path = Path(path)
    if path.is_dir():
        path = path / "mined.jsonl"
    return [MinedExample.model_validate_json(line) for line in path.read_text().splitlines() if line.strip()]
