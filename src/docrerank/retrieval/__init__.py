"""First-stage retrieval over a page store: retrievers with saved indexes, TREC run files, queries, mining."""

from docrerank.retrieval.base import Retriever, store_fingerprint
from docrerank.retrieval.bm25 import BM25Retriever
from docrerank.retrieval.colpali import ColPaliRetriever
from docrerank.retrieval.dense import DenseRetriever
from docrerank.retrieval.hybrid import HybridRetriever, fuse
from docrerank.retrieval.mining import (
    MinedExample,
    MinedNegative,
    MiningSettings,
    false_negative_rates,
    mine,
    read_mined,
    write_mined,
)
from docrerank.retrieval.queries import RetrievalQuery, read_queries
from docrerank.retrieval.registry import FIRST_STAGE, RETRIEVER_NAMES, make_retriever
from docrerank.retrieval.runs import Ranking, Run, read_trec, write_trec

__all__ = [
    "FIRST_STAGE",
    "RETRIEVER_NAMES",
    "BM25Retriever",
    "ColPaliRetriever",
    "DenseRetriever",
    "HybridRetriever",
    "MinedExample",
    "MinedNegative",
    "MiningSettings",
    "Ranking",
    "RetrievalQuery",
    "Retriever",
    "Run",
    "false_negative_rates",
    "fuse",
    "make_retriever",
    "mine",
    "read_mined",
    "read_queries",
    "read_trec",
    "store_fingerprint",
    "write_mined",
    "write_trec",
]
