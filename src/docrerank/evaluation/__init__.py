"""Reranker evaluation as the paper does it: benchmarks in one form, first stage + rerankers, metrics, tests."""

from docrerank.evaluation.benchmark import Benchmark, TextCorpus
from docrerank.evaluation.loaders import load_beir, load_realmm, load_store, load_vidore, read_trec_qrels
from docrerank.evaluation.metrics import LABELS, MEASURES, PRIMARY, mean, paired_p_value, per_query
from docrerank.evaluation.runner import (
    CachedReranker,
    Comparison,
    Evaluation,
    ScoreCache,
    SystemResult,
    candidate_pairs,
    evaluate,
    reranker_identity,
    score_pairs,
)

__all__ = [
    "LABELS",
    "MEASURES",
    "PRIMARY",
    "Benchmark",
    "CachedReranker",
    "Comparison",
    "Evaluation",
    "ScoreCache",
    "SystemResult",
    "TextCorpus",
    "candidate_pairs",
    "evaluate",
    "load_beir",
    "load_realmm",
    "load_store",
    "load_vidore",
    "mean",
    "paired_p_value",
    "per_query",
    "read_trec_qrels",
    "reranker_identity",
    "score_pairs",
]
