"""Evaluation as the paper does it: the first stage's top ``k``, every reranker re-scoring the same
candidates, metrics per query, and each system's difference from the first stage and from the other
rerankers with its significance.

Rerank scores are cached in ``scores.sqlite`` under the system's name and identity (a saved model's
folder, the settings), keyed by query text and page id: a rerun with one more reranker scores only that
one, and an interrupted run keeps every query it finished.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from docrerank.evaluation.benchmark import Benchmark
from docrerank.evaluation.metrics import PRIMARY, mean, paired_p_value, per_query
from docrerank.rerankers.base import Reranker
from docrerank.retrieval.runs import Run

__all__ = ["Comparison", "Evaluation", "ScoreCache", "SystemResult", "evaluate", "reranker_identity"]


def reranker_identity(reranker: Reranker, spec: str) -> str:
    """What decides a reranker's scores: its spec (name, model), kind and settings, and for a saved folder
    the sizes and times of its files, so retraining into the same folder is not answered from the cache."""
    parts = {"spec": spec, "kind": reranker.kind, "settings": reranker.settings()}
    folder = Path(spec.split("=", 1)[-1])
    if folder.is_dir():
        parts["files"] = sorted((str(p.relative_to(folder)), p.stat().st_size, p.stat().st_mtime_ns)
                                for p in folder.rglob("*") if p.is_file() and "checkpoints" not in p.parts)  # fmt: skip
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


class ScoreCache:
    """(system identity, query text, page id) -> score, in SQLite; written per query as it is scored."""

    def __init__(self, path: Path | None):
        self.db = sqlite3.connect(str(path) if path else ":memory:")
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS scores (system TEXT, query TEXT, page_id TEXT, score REAL, "
            "PRIMARY KEY (system, query, page_id))"
        )

    def get(self, system: str, query: str, page_ids: Sequence[str]) -> dict[str, float]:
        rows = self.db.execute("SELECT page_id, score FROM scores WHERE system = ? AND query = ?", (system, query))
        wanted = set(page_ids)
        return {page_id: score for page_id, score in rows if page_id in wanted}

    def put(self, system: str, query: str, scores: dict[str, float]) -> None:
        with self.db:
            self.db.executemany(
                "INSERT OR REPLACE INTO scores VALUES (?, ?, ?, ?)",
                [(system, query, page_id, score) for page_id, score in scores.items()],
            )


@dataclass
class SystemResult:
    name: str
    run: Run
    values: dict[str, dict[str, float]]  # measure -> query id -> value

    @property
    def means(self) -> dict[str, float]:
        return {measure: mean(by_query) for measure, by_query in self.values.items()}


@dataclass
class Comparison:
    """``system`` against ``baseline`` on the primary measure: mean difference and paired p-value."""

    system: str
    baseline: str
    delta: float
    p_value: float


@dataclass
class Evaluation:
    benchmark: str
    source: dict[str, str]  # Benchmark.source: a report reopens the pages from it
    k: int
    queries: int
    systems: list[SystemResult]
    comparisons: list[Comparison] = field(default_factory=list)


def _rerank(
    benchmark: Benchmark, candidates: Run, reranker: Reranker, system: str, cache: ScoreCache, advance: Callable
) -> Run:
    reranked: Run = {}
    for query_id, ranking in candidates.items():
        query = benchmark.queries[query_id]
        page_ids = [page_id for page_id, _ in ranking]
        scores = cache.get(system, query, page_ids)
        missing = [p for p in page_ids if p not in scores]
        if missing:
            images = "image" in reranker.uses
            fresh = reranker.score([(query, benchmark.page(p, image=images)) for p in missing])
            new = dict(zip(missing, map(float, fresh), strict=True))
            cache.put(system, query, new)
            scores.update(new)
        # a stable sort: equal scores keep the first stage's order
        reranked[query_id] = sorted(((p, scores[p]) for p in page_ids), key=lambda item: -item[1])
        advance()
    return reranked


def evaluate(
    benchmark: Benchmark,
    first_stage: Run,
    rerankers: dict[str, tuple[Reranker, str]],
    k: int = 20,
    first_stage_name: str = "first stage",
    cache: ScoreCache | None = None,
    advance: Callable[[], None] = lambda: None,
) -> Evaluation:
    """Score the first stage and each reranker (``name -> (reranker, identity)``) on the judged queries;
    ``advance`` is called once a query per reranker (a progress bar)."""
    cache = cache or ScoreCache(None)
    queries = benchmark.judged_queries
    candidates = {q: first_stage.get(q, [])[:k] for q in queries}
    systems = [SystemResult(first_stage_name, candidates, per_query(candidates, benchmark.qrels, queries))]
    for name, (reranker, identity) in rerankers.items():
        run = _rerank(benchmark, candidates, reranker, f"{name}:{identity}", cache, advance)
        systems.append(SystemResult(name, run, per_query(run, benchmark.qrels, queries)))
    comparisons = []
    for i, system in enumerate(systems[1:], 1):
        for baseline in systems[:i]:
            a, b = system.values[PRIMARY], baseline.values[PRIMARY]
            delta = mean(a) - mean(b)
            comparisons.append(Comparison(system.name, baseline.name, delta, paired_p_value(a, b)))
    return Evaluation(benchmark.name, benchmark.source, k, len(queries), systems, comparisons)
