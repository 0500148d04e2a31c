"""Retrievers by name, as the command line gives them: ``bm25``, ``dense``, ``colpali``, and the fusion of any
two as ``A+B`` (``hybrid`` is ``bm25+dense``).

A dense or ColPali part may name its model after a colon: ``dense:embeddinggemma``, ``bm25+dense:mpnet``,
``dense:embeddinggemma+dense`` (two models fused). A part without one takes ``model`` (a ``--model``
option), else its default. Every index is fingerprinted by its model, so indexes of two models never mix.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from docrerank.errors import DocrerankError
from docrerank.pages import PageStore
from docrerank.retrieval.base import Retriever

__all__ = ["FIRST_STAGE", "RETRIEVER_NAMES", "make_retriever"]

RETRIEVER_NAMES = ("bm25", "dense", "hybrid", "colpali")
HYBRID_DEFAULT = "bm25+dense"
# the first stage of `retrieve` (so of `rerank`) and `evaluate`: the best measured by bench/decision.py
FIRST_STAGE = "dense:embeddinggemma"

Progress = Callable[[int, int], Any]


def _single(spec: str, store: PageStore, model: str | None, progress: Progress | None) -> Retriever:
    name, _, named = spec.partition(":")
    model = named or model
    if name == "bm25":
        if named:
            raise DocrerankError(f"retriever {spec!r}: bm25 has no model; name one for dense or colpali only")
        from docrerank.retrieval.bm25 import BM25Retriever

        return BM25Retriever(store)
    if name == "dense":
        from docrerank.retrieval.dense import DenseRetriever

        return DenseRetriever(store, progress=progress, **({"model": model} if model else {}))
    if name == "colpali":
        from docrerank.retrieval.colpali import ColPaliRetriever

        return ColPaliRetriever(store, progress=progress, **({"model": model} if model else {}))
    raise DocrerankError(
        f"unknown retriever {name!r}: use one of {', '.join(RETRIEVER_NAMES)} (dense:MODEL names a model), "
        "or two joined by '+' (bm25+colpali, bm25+dense:embeddinggemma)"
    )


def make_retriever(
    spec: str, store: PageStore, model: str | None = None, progress: Progress | None = None
) -> Retriever:
    """The retriever ``spec`` names; ``model`` is the dense or ColPali model of parts that name none (``dense``
    rather than ``dense:mpnet``); ``progress(done, total)`` is called while a dense or ColPali index is built."""
    spec = HYBRID_DEFAULT if spec == "hybrid" else spec
    parts = spec.split("+")
    if len(parts) == 1:
        return _single(spec, store, model, progress)
    if len(parts) != 2 or parts[0] == parts[1]:
        raise DocrerankError(f"a hybrid retriever fuses two different retrievers (bm25+dense), not {spec!r}")
    from docrerank.retrieval.hybrid import HybridRetriever

    return HybridRetriever(*(_single(part, store, model, progress) for part in parts))
