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
import math
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from docrerank.evaluation.benchmark import Benchmark
from docrerank.evaluation.metrics import PRIMARY, mean, paired_p_value, per_query
from docrerank.pages.content import PageLike
from docrerank.rerankers.base import Reranker
from docrerank.retrieval.runs import Run

__all__ = [
    "CachedReranker",
    "ChunkRunner",
    "Comparison",
    "Evaluation",
    "ScoreCache",
    "SystemResult",
    "candidate_pairs",
    "evaluate",
    "in_turn",
    "reranker_identity",
    "score_pairs",
]


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
    """(system identity, query text, page id) -> score, in SQLite; written chunk by chunk as it is scored."""

    def __init__(self, path: Path | None):
        self.db = sqlite3.connect(str(path) if path else ":memory:")
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS scores (system TEXT, query TEXT, page_id TEXT, score REAL, "
            "PRIMARY KEY (system, query, page_id))"
        )

    def scores(self, system: str) -> dict[tuple[str, str], float]:
        """Every cached (query, page id) -> score of one system."""
        rows = self.db.execute("SELECT query, page_id, score FROM scores WHERE system = ?", (system,))
        return {(query, page_id): score for query, page_id, score in rows}

    def put(self, system: str, scores: dict[tuple[str, str], float]) -> None:
        with self.db:
            self.db.executemany(
                "INSERT OR REPLACE INTO scores VALUES (?, ?, ?, ?)",
                [(system, query, page_id, score) for (query, page_id), score in scores.items()],
            )


class CachedReranker(Reranker):
    """A pairwise reranker answered from a ``ScoreCache`` where it can, the rest scored and cached: a
    cascade built of rerankers an evaluation already scored (its student and teacher rows) pays only for the
    pairs they have not seen. Pages without a ``page_id`` are always scored."""

    def __init__(self, reranker: Reranker, system: str, cache: ScoreCache):
        if not reranker.pairwise:
            raise ValueError(f"only a pairwise reranker's scores can be cached, not a {reranker.kind}'s")
        self.reranker, self.system, self.cache = reranker, system, cache
        self.kind, self.uses = reranker.kind, reranker.uses

    def settings(self) -> dict:
        return self.reranker.settings()

    def score(self, pairs: Sequence[tuple[str, PageLike]]) -> list[float]:
        known = self.cache.scores(self.system)
        keys = [(query, getattr(page, "page_id", None)) for query, page in pairs]
        missing = [i for i, key in enumerate(keys) if key[1] is None or key not in known]
        fresh = dict(zip(missing, map(float, self.reranker.score([pairs[i] for i in missing])), strict=True))
        self.cache.put(
            self.system,
            {keys[i]: s for i, s in fresh.items() if keys[i][1] is not None and math.isfinite(s)},
        )
        return [fresh[i] if i in fresh else known[key] for i, key in enumerate(keys)]


Chunk = list[tuple[str, PageLike]]
# (how many chunks, ``chunk(index)`` opening one chunk's pairs, ``done(index, scores)`` to call as each chunk
# is scored, in any order)
ChunkRunner = Callable[[int, Callable[[int], Chunk], Callable[[int, list[float]], None]], None]


def in_turn(reranker: Reranker) -> ChunkRunner:
    """The chunks scored one after another in this process, each chunk's pages opened when it is scored."""

    def run(count: int, chunk: Callable[[int], Chunk], done: Callable[[int, list[float]], None]) -> None:
        for index in range(count):
            done(index, reranker.score(chunk(index)))

    return run


def score_pairs(
    reranker: Reranker,
    system: str,
    pairs: Sequence[tuple[str, str]],
    page: Callable[[str, bool], PageLike],
    cache: ScoreCache,
    advance: Callable[[int], None] = lambda n: None,
    chunk: int = 64,
    run_chunks: ChunkRunner | None = None,
) -> dict[tuple[str, str], float]:
    """Scores of (query text, page id) pairs: those in the cache, the rest scored ordered by page, so a chat
    model's backend evaluates a page's prompt prefix once for all its queries, and cached chunk by chunk,
    so an interrupted run keeps what it scored. A score that is not finite (a pair the reranker could not
    score) is returned but not cached: a rerun retries it. ``page(page_id, image)`` opens a page;
    ``run_chunks`` scores the chunks (default: ``in_turn``; ``score_chunks_on_ray`` spreads them over a cluster)."""
    known = cache.scores(system)
    wanted = list(dict.fromkeys(pairs))
    scores = {pair: known[pair] for pair in wanted if pair in known}
    advance(len(scores))
    missing = sorted((pair for pair in wanted if pair not in known), key=lambda pair: pair[1])
    images = "image" in reranker.uses
    batches = [missing[start : start + chunk] for start in range(0, len(missing), chunk)]

    def done(index: int, fresh: list[float]) -> None:
        new = dict(zip(batches[index], map(float, fresh), strict=True))
        cache.put(system, {pair: score for pair, score in new.items() if math.isfinite(score)})
        scores.update(new)
        advance(len(new))

    def chunk_pairs(index: int) -> Chunk:
        return [(query, page(page_id, images)) for query, page_id in batches[index]]

    (run_chunks or in_turn(reranker))(len(batches), chunk_pairs, done)
    return scores


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


def candidate_pairs(benchmark: Benchmark, candidates: Run) -> list[tuple[str, str]]:
    """(query text, page id) of every candidate: what each reranker scores."""
    return [(benchmark.queries[q], page_id) for q, ranking in candidates.items() for page_id, _ in ranking]


def _score_sets(
    benchmark: Benchmark, candidates: Run, reranker: Reranker, advance: Callable[[int], None]
) -> dict[tuple[str, str], float]:
    images = "image" in reranker.uses
    sets = [
        [(benchmark.queries[q], benchmark.page(p, images)) for p, _ in ranking] for q, ranking in candidates.items()
    ]
    scores = {}
    for (q, ranking), values in zip(candidates.items(), reranker.score_sets(sets), strict=True):
        scores.update({(benchmark.queries[q], p): float(v) for (p, _), v in zip(ranking, values, strict=True)})
    advance(sum(map(len, sets)))
    return scores


def evaluate(
    benchmark: Benchmark,
    first_stage: Run,
    rerankers: dict[str, tuple[Reranker, str]],
    k: int = 20,
    first_stage_name: str = "first stage",
    cache: ScoreCache | None = None,
    progress: Callable[[int, int], None] = lambda done, total: None,
) -> Evaluation:
    """Score the first stage and each reranker (``name -> (reranker, identity)``) on the judged queries;
    ``progress(done, total)`` counts the candidate pairs settled over all rerankers (a progress bar)."""
    cache = cache or ScoreCache(None)
    queries = benchmark.judged_queries
    candidates = {q: first_stage.get(q, [])[:k] for q in queries}
    systems = [SystemResult(first_stage_name, candidates, per_query(candidates, benchmark.qrels, queries))]
    pairs = list(dict.fromkeys(candidate_pairs(benchmark, candidates)))  # two queries may share a text
    done, total = 0, len(pairs) * len(rerankers)

    def advance(n: int) -> None:
        nonlocal done
        done += n
        progress(done, total)

    for name, (reranker, identity) in rerankers.items():
        if reranker.pairwise:
            scores = score_pairs(reranker, f"{name}:{identity}", pairs, benchmark.page, cache, advance)
        else:  # its scores depend on the query's other candidates: each query's set together, never cached
            scores = _score_sets(benchmark, candidates, reranker, advance)
        # a stable sort: equal scores keep the first stage's order
        run = {
            q: sorted(((p, scores[benchmark.queries[q], p]) for p, _ in ranking), key=lambda item: -item[1])
            for q, ranking in candidates.items()
        }
        systems.append(SystemResult(name, run, per_query(run, benchmark.qrels, queries)))
    comparisons = []
    for i, system in enumerate(systems[1:], 1):
        for baseline in systems[:i]:
            a, b = system.values[PRIMARY], baseline.values[PRIMARY]
            delta = mean(a) - mean(b)
            comparisons.append(Comparison(system.name, baseline.name, delta, paired_p_value(a, b)))
    return Evaluation(benchmark.name, benchmark.source, k, len(queries), systems, comparisons)
