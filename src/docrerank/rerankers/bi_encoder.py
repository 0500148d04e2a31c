"""A bi-encoder as a reranker: the cosine of the query's vector and the page's best chunk.

The same scoring as the dense first stage (``retrieval.dense``: the model's query and document prompts,
the page cut into overlapping chunks, the best chunk's cosine), over the candidates of a run instead of the
whole store. It is what ``docrerank train --reranker bi-encoder`` adapts: a bi-encoder already ranks well
before training (EmbeddingGemma alone is the project's best first stage), so a few hundred generated
examples move it instead of teaching a fresh scoring head from nothing. A saved one is also a first stage:
``--retriever dense:OUT``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from docrerank.embeddings import encode_side
from docrerank.encoders import DEFAULT_ENCODER, canonical_encoder, encoder_path
from docrerank.errors import DocrerankError, import_optional
from docrerank.pages.content import PageLike
from docrerank.rerankers.base import PairScore, Reranker, page_text, scored_where_text
from docrerank.retrieval.dense import CHUNKING, DEFAULT_CHUNKING, chunk_words

__all__ = ["BiEncoderReranker"]

MEMO_VECTORS = 200_000  # a memo holds at most this many vectors (~600 MB at 768 floats), then starts again


class BiEncoderReranker(Reranker):
    kind = "bi-encoder"
    uses = frozenset({"text"})

    def __init__(
        self,
        model: str | None = None,
        chunk_words: int | None = None,
        stride: int | None = None,
        batch_size: int = 32,
        device: str | None = None,
    ):
        """``model``: a short name (``all-MiniLM-L6-v2`` by default, ``mpnet``, ``embeddinggemma``), a local folder
        or a Hub name; its own instance (training changes its weights, so the process-wide cache of
        ``embeddings.load_embedder`` is not used). Chunks default to what the model reads (``CHUNKING``)."""
        sentence_transformers = import_optional("sentence_transformers", "embed")
        import transformers

        transformers.utils.logging.disable_progress_bar()
        name = canonical_encoder(model or DEFAULT_ENCODER)
        size, default_stride = CHUNKING.get(name, DEFAULT_CHUNKING)
        self.chunk_words = size if chunk_words is None else chunk_words
        self.stride = default_stride if stride is None else stride
        self.batch_size = batch_size
        # (query side, text) -> vector, for a model whose weights never change (a fusion's base); None: no memo
        self.memo: dict[tuple[bool, str], np.ndarray] | None = None
        try:
            # no attention dropout (BERT-family configs), as for the cross-encoder: with it, training on a CPU
            # leaves PyTorch's fused attention for the plain kernel (2-2.5x a step); inference is unchanged
            self.model = sentence_transformers.SentenceTransformer(
                encoder_path(name), device=device, config_kwargs={"attention_probs_dropout_prob": 0.0}
            )
        except OSError as exc:
            raise DocrerankError(
                f"cannot load the bi-encoder {model!r} ({exc}): give a local path or a Hub name"
            ) from None

    def settings(self) -> dict[str, Any]:
        return {"chunk_words": self.chunk_words, "stride": self.stride}

    def encode(self, texts: Sequence[str], query: bool) -> np.ndarray:
        """Unit-length vectors, each text with the model's prompt for its side (query or document); with a
        ``memo``, only the texts it does not hold are encoded."""
        if self.memo is None or not texts:
            return self._encode(texts, query)
        missing = [text for text in dict.fromkeys(texts) if (query, text) not in self.memo]
        if missing:
            if len(self.memo) + len(missing) > MEMO_VECTORS:
                self.memo.clear()
            self.memo.update(zip(((query, t) for t in missing), self._encode(missing, query), strict=True))
        return np.stack([self.memo[query, text] for text in texts])

    def _encode(self, texts: Sequence[str], query: bool) -> np.ndarray:
        training = self.model.training
        vectors = encode_side(self.model, list(texts), query, self.batch_size)
        self.model.train(training)  # encode leaves the model in eval mode; training goes on in train mode
        return vectors

    def best_chunks(self, pairs: Sequence[tuple[str, PageLike]]) -> tuple[list[float], list[str]]:
        """Each pair's best chunk: its cosine with the query, and its text."""
        chunks, owners = [], []
        for index, (_, page) in enumerate(pairs):
            for chunk in chunk_words(page_text(page), self.chunk_words, self.stride):
                chunks.append(chunk)
                owners.append(index)
        if not chunks:
            return [], []
        queries = list(dict.fromkeys(query for query, _ in pairs))  # a text shared by pairs is encoded once
        query_vectors = dict(zip(queries, self.encode(queries, query=True), strict=True))
        distinct = list(dict.fromkeys(chunks))
        chunk_vectors = dict(zip(distinct, self.encode(distinct, query=False), strict=True))
        best, chosen = [float("-inf")] * len(pairs), [""] * len(pairs)
        for owner, chunk in zip(owners, chunks, strict=True):
            value = float(chunk_vectors[chunk] @ query_vectors[pairs[owner][0]])
            if value > best[owner]:
                best[owner], chosen[owner] = value, chunk
        return best, chosen

    def score(self, pairs: Sequence[tuple[str, PageLike]]) -> list[float]:
        return [result.score for result in self.score_results(pairs)]

    def score_results(self, pairs: Sequence[tuple[str, PageLike]]) -> list[PairScore]:
        """The best chunk's cosine per pair; a page without text is a failure (ranked last), the rest scored."""
        return scored_where_text(pairs, lambda scorable: self.best_chunks(scorable)[0])

    def save(self, path) -> None:
        self.model.save(str(path))
        super().save(path)
