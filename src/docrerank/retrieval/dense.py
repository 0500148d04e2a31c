"""Dense text retrieval with a sentence-transformers model (default: the bundled all-MiniLM-L6-v2).

A page is usually longer than the model reads (MiniLM stops at 256 word pieces), so each page is cut into
overlapping chunks of ``chunk_words`` words (``stride`` words apart) and a page scores as its best chunk
(max-pooling): a query about the bottom of a page still finds it. ``chunk_words=0`` embeds each page whole
(the model truncates it), as sentence-transformers' own mining does. The chunk size suits the model
(``CHUNKING``): 128 words by default, 256 for EmbeddingGemma, which reads 2048 tokens.

Queries and chunks go through ``encode_query`` and ``encode_document``, so a model with configured prompts
(EmbeddingGemma: "task: search result | query: " and "title: none | text: ") gets each side's own; models
without them (MiniLM, mpnet) encode both plainly.

The index folder holds ``embeddings.npy`` (unit-length float32 rows, one per chunk, so a dot product is the
cosine similarity), ``chunk_pages.npy`` (the page of each row; a page's rows are contiguous) and
``page_ids.json``. It is built in parts of ``PART_CHUNKS`` chunks saved as they finish, so an interrupted
build resumes where it stopped. Search is exact: blocked matrix products, then the best chunk per page.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from docrerank.embeddings import DEFAULT_EMBEDDER, encode_side, load_embedder
from docrerank.encoders import canonical_encoder
from docrerank.pages import PageStore
from docrerank.retrieval.base import Retriever
from docrerank.retrieval.runs import Ranking

__all__ = ["CHUNKING", "DenseRetriever", "chunk_words", "exact_search"]

PART_CHUNKS = 512
QUERY_MEMO = 65536  # query vectors kept from search() for score() (mining asks both for the same queries)
SCORE_BLOCK_FLOATS = 2**24  # query x chunk scores held at once (64 MiB of float32, plus the top-k selection)
# (words per chunk, stride) by model: what each reads. MiniLM stops at 256 word pieces (~128 words of prose);
# EmbeddingGemma reads 2048 tokens and was measured best on ~256-word chunks (independent manual pages).
DEFAULT_CHUNKING = (128, 96)
CHUNKING = {"embeddinggemma-300m": (256, 192)}


def chunk_words(text: str, size: int, stride: int) -> list[str]:
    """Overlapping windows of ``size`` words, ``stride`` words apart, covering every word; the whole text
    when ``size`` is 0 or the text is short."""
    words = text.split()
    if size <= 0 or len(words) <= size:
        return [" ".join(words)]
    starts = list(range(0, len(words) - size, stride)) + [len(words) - size]
    return [" ".join(words[start : start + size]) for start in starts]


def exact_search(
    queries: np.ndarray, rows: np.ndarray, k: int, row_pages: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` best (page index, score) per query by dot product, best first.

    ``rows`` are the indexed vectors; with ``row_pages`` (the page of each row, a page's rows contiguous and
    in page order) a page scores as its best row. Queries go in blocks so the score matrix stays within
    ``SCORE_BLOCK_FLOATS``.
    """
    starts = None
    if row_pages is not None:
        starts = np.flatnonzero(np.r_[True, row_pages[1:] != row_pages[:-1]])
    n_pages = len(rows) if starts is None else len(starts)
    k = min(k, n_pages)
    block = max(1, SCORE_BLOCK_FLOATS // max(1, len(rows)))
    top_ids = np.zeros((len(queries), k), dtype=np.int64)
    top_scores = np.zeros((len(queries), k), dtype=np.float32)
    for begin in range(0, len(queries), block):
        scores = queries[begin : begin + block] @ rows.T
        if starts is not None:
            scores = np.maximum.reduceat(scores, starts, axis=1)
        if k < n_pages:
            part = np.argpartition(scores, n_pages - k, axis=1)[:, n_pages - k :]  # the k largest, no negated copy
        else:
            part = np.tile(np.arange(n_pages), (len(scores), 1))
        part_scores = np.take_along_axis(scores, part, axis=1)
        order = np.argsort(-part_scores, axis=1, kind="stable")
        top_ids[begin : begin + block] = np.take_along_axis(part, order, axis=1)
        top_scores[begin : begin + block] = np.take_along_axis(part_scores, order, axis=1)
    return top_ids, top_scores


class DenseRetriever(Retriever):
    name = "dense"

    def __init__(
        self,
        store: PageStore,
        model: str = DEFAULT_EMBEDDER,
        chunk_words: int | None = None,
        stride: int | None = None,
        query_prompt: str | None = None,
        batch_size: int = 64,
        device: str | None = None,
        progress: Callable[[int, int], Any] | None = None,
    ):
        """``chunk_words`` and ``stride`` default to the model's (``CHUNKING``; a given ``chunk_words`` alone
        gets a stride of 3/4 of it); ``query_prompt`` replaces the model's own query prompt."""
        super().__init__(store)
        model = canonical_encoder(model)
        if chunk_words is None:
            chunk_words, default_stride = CHUNKING.get(model, DEFAULT_CHUNKING)
        else:
            default_stride = max(1, chunk_words * 3 // 4)
        stride = default_stride if stride is None else stride
        if chunk_words > 0 and not 0 < stride <= chunk_words:
            raise ValueError(f"stride must be in 1..chunk_words ({chunk_words}), not {stride}")
        self.model, self.chunk_words, self.stride = model, chunk_words, stride
        self.query_prompt, self.batch_size, self.device = query_prompt, batch_size, device
        self.progress = progress  # called with (chunks embedded, chunks in all) while the index is built
        self._rows: np.ndarray | None = None
        self._row_pages: np.ndarray | None = None
        self._page_ids: list[str] = []
        self._query_vectors: dict[str, np.ndarray] = {}  # from search(), reused by score()

    def settings(self) -> dict[str, Any]:
        chunks = {"chunk_words": self.chunk_words, "stride": self.stride if self.chunk_words > 0 else None}
        return {"model": self.model, **chunks, "pooling": "max over chunks"}

    def _encode(self, texts: list[str], query: bool) -> np.ndarray:
        """Unit-length vectors of queries or of page chunks, each with the model's prompt for its side."""
        return encode_side(load_embedder(self.model, self.device), texts, query, self.batch_size, self.query_prompt)

    def _load(self) -> None:
        if self._rows is not None:
            return
        folder = self.index_dir
        if not (folder / "page_ids.json").exists():
            self._build()
        self._rows = np.load(folder / "embeddings.npy")
        self._row_pages = np.load(folder / "chunk_pages.npy")
        self._page_ids = json.loads((folder / "page_ids.json").read_text())

    def _build(self) -> None:
        """Embed every chunk, a part at a time; parts already in the ``.tmp`` folder are kept (resume)."""
        pages = [p for p in self.store if p.text.strip()]
        chunks, owners = [], []
        for number, page in enumerate(pages):
            pieces = chunk_words(page.text, self.chunk_words, self.stride)
            chunks.extend(pieces)
            owners.extend([number] * len(pieces))
        tmp = self.building_dir()
        parts = []
        for part, start in enumerate(range(0, len(chunks), PART_CHUNKS)):
            path = tmp / f"part-{part:05d}.npy"
            if not path.exists():
                np.save(tmp / "part.partial.npy", self._encode(chunks[start : start + PART_CHUNKS], query=False))
                (tmp / "part.partial.npy").replace(path)
            parts.append(np.load(path))
            if self.progress is not None:
                self.progress(min(start + PART_CHUNKS, len(chunks)), len(chunks))
        rows = np.concatenate(parts) if parts else np.zeros((0, 1), dtype=np.float32)
        np.save(tmp / "embeddings.npy", rows)
        np.save(tmp / "chunk_pages.npy", np.asarray(owners, dtype=np.int64))
        self.publish_index(tmp, [p.page_id for p in pages])

    def search(self, queries: Sequence[str], k: int) -> list[Ranking]:
        self._load()
        if not queries or not self._page_ids:
            return [[] for _ in queries]
        vectors = self._encode(list(queries), query=True)
        if len(self._query_vectors) > QUERY_MEMO:
            self._query_vectors = {}
        self._query_vectors.update(zip(queries, vectors, strict=True))
        ids, scores = exact_search(vectors, self._rows, k, self._row_pages)
        return [
            [(self._page_ids[i], float(s)) for i, s in zip(row_ids, row_scores, strict=True)]
            for row_ids, row_scores in zip(ids, scores, strict=True)
        ]

    def score(self, queries: Sequence[str], page_ids: Sequence[str]) -> list[float]:
        self._load()
        if not queries:
            return []
        position = {page_id: i for i, page_id in enumerate(self._page_ids)}
        new = [q for q in dict.fromkeys(queries) if q not in self._query_vectors]
        known = dict(zip(new, self._encode(new, query=True) if new else [], strict=True))
        starts = np.searchsorted(self._row_pages, np.arange(len(self._page_ids) + 1))  # a page's rows are contiguous
        scores = []
        for query, page_id in zip(queries, page_ids, strict=True):
            page = position.get(page_id)
            if page is None:
                scores.append(0.0)
                continue
            vector = known[query] if query in known else self._query_vectors[query]
            scores.append(float((self._rows[starts[page] : starts[page + 1]] @ vector).max()))
        return scores
