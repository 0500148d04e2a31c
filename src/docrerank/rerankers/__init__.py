"""Rerankers: score (query, page) pairs and reorder a first-stage run."""

from docrerank.rerankers.base import UNSCORED, PairScore, Reranker, UntrustedRerankerError
from docrerank.rerankers.bi_encoder import BiEncoderReranker
from docrerank.rerankers.cascade import CascadeReranker
from docrerank.rerankers.cross_encoder import CrossEncoderReranker
from docrerank.rerankers.fusion import FusionReranker
from docrerank.rerankers.registry import RERANKER_KINDS, RerankerKind
from docrerank.rerankers.true_false import TrueFalseReranker
from docrerank.rerankers.zero_shot import LLMReranker

__all__ = [
    "RERANKER_KINDS",
    "UNSCORED",
    "BiEncoderReranker",
    "CascadeReranker",
    "CrossEncoderReranker",
    "FusionReranker",
    "LLMReranker",
    "PairScore",
    "Reranker",
    "RerankerKind",
    "TrueFalseReranker",
    "UntrustedRerankerError",
]
