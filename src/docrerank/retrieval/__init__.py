"""First-stage retrieval over a page store: retrievers with saved indexes, TREC run files, queries."""

from docrerank.retrieval.base import Retriever, store_fingerprint
from docrerank.retrieval.bm25 import BM25Retriever
from docrerank.retrieval.queries import RetrievalQuery, read_queries
from docrerank.retrieval.runs import Ranking, Run, read_trec, write_trec

__all__ = [
    "BM25Retriever",
    "Ranking",
    "RetrievalQuery",
    "Retriever",
    "Run",
    "read_queries",
    "read_trec",
    "store_fingerprint",
    "write_trec",
]
