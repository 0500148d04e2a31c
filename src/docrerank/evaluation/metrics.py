"""Metrics per query through ir-measures, and the paired significance test between two systems.

Ties: a run is handed to ir-measures as ranks, not raw scores (the score of rank r of n is n - r), so the
order docrerank decided is the order measured. docrerank's own order breaks equal scores by the first
stage's order (a stable sort), never by page id as trec_eval would.

Queries a system returns nothing for count as 0 (``iter_calc`` yields no value for them; the mean over all
judged queries is then what ``calc_aggregate`` gives); metrics are averaged over the queries with a judged
relevant page.

Significance: a two-sided paired randomization test on the per-query values (the test IR evaluation
recommends: Smucker, Allan and Carterette, 2007), 10,000 sign flips with a fixed seed, via scipy.
"""

from __future__ import annotations

from docrerank.errors import import_optional
from docrerank.retrieval.runs import Run

__all__ = ["LABELS", "MEASURES", "PRIMARY", "mean", "paired_p_value", "per_query"]

MEASURES = ("nDCG@5", "nDCG@10", "R@1", "R@5", "RR@10")  # ir-measures names
LABELS = {"nDCG@5": "NDCG@5", "nDCG@10": "NDCG@10", "R@1": "Recall@1", "R@5": "Recall@5", "RR@10": "MRR@10"}
PRIMARY = "nDCG@5"


def per_query(
    run: Run, qrels: dict[str, dict[str, int]], queries: list[str], measures: tuple[str, ...] = MEASURES
) -> dict[str, dict[str, float]]:
    """``{measure: {query_id: value}}`` for every query in ``queries`` (0 where the run has nothing)."""
    ir_measures = import_optional("ir_measures", "eval")
    parsed = {str(ir_measures.parse_measure(m)): m for m in measures}
    judged = [ir_measures.Qrel(q, p, g) for q in queries for p, g in qrels.get(q, {}).items()]
    scored = [
        ir_measures.ScoredDoc(q, page_id, float(len(run[q]) - rank))
        for q in queries
        if q in run
        for rank, (page_id, _) in enumerate(run[q])
    ]
    values = {m: dict.fromkeys(queries, 0.0) for m in measures}
    for metric in ir_measures.iter_calc(list(map(ir_measures.parse_measure, measures)), judged, scored):
        values[parsed[str(metric.measure)]][metric.query_id] = float(metric.value)
    return values


def mean(values: dict[str, float]) -> float:
    return sum(values.values()) / len(values) if values else float("nan")


def paired_p_value(a: dict[str, float], b: dict[str, float], resamples: int = 10_000, seed: int = 0) -> float:
    """Two-sided p-value that the per-query values ``a`` and ``b`` (same queries) have the same mean."""
    import numpy as np

    scipy_stats = import_optional("scipy.stats", "eval")
    queries = sorted(a)
    x, y = np.array([a[q] for q in queries]), np.array([b[q] for q in queries])
    if len(queries) < 2 or np.allclose(x, y):
        return 1.0
    result = scipy_stats.permutation_test(
        (x, y),
        lambda u, v, axis: np.mean(u - v, axis=axis),
        permutation_type="samples",
        n_resamples=resamples,
        alternative="two-sided",
        vectorized=True,
        random_state=np.random.default_rng(seed),
    )
    return float(result.pvalue)
