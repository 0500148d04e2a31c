"""BM25 over page text (bm25s).

Tokenizer: bm25s's default pattern (runs of two or more word characters, lowercased), English stopwords
removed, then the Snowball English stemmer (PyStemmer), the same for pages and queries, so
"estimates"/"estimated" meet and "the"/"of" do not count. Scoring: Lucene's BM25 variant (k1=1.5, b=0.75).
Pages without text are not indexed (re-ingest them with OCR to make them findable). Pages that share no
term with a query are not returned for it.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Sequence
from typing import Any

from docrerank.errors import import_optional
from docrerank.pages import PageStore
from docrerank.retrieval.base import Retriever
from docrerank.retrieval.runs import Ranking

__all__ = ["BM25Retriever", "import_bm25s"]


@functools.cache  # once: the focused view asks for it a pair, and setLevel clears every logger's level cache
def import_bm25s():
    """bm25s, its logger put back under the application's logging: bm25s sets it to DEBUG when imported, so
    every index it built (the focused view builds one a page) printed a line through the CLI's handler."""
    bm25s = import_optional("bm25s", "retrieval")
    logging.getLogger("bm25s").setLevel(logging.NOTSET)
    return bm25s


class BM25Retriever(Retriever):
    name = "bm25"

    def __init__(self, store: PageStore, k1: float = 1.5, b: float = 0.75, language: str = "english"):
        super().__init__(store)
        self.k1, self.b, self.language = k1, b, language
        self._bm25s = import_bm25s()
        stemmer = import_optional("Stemmer", "retrieval")
        self._stemmer = stemmer.Stemmer(language)
        self._index = None
        self._page_ids: list[str] = []

    def settings(self) -> dict[str, Any]:
        return {"k1": self.k1, "b": self.b, "language": self.language, "stopwords": "en", "method": "lucene"}

    def _tokens(self, texts: list[str], ids: bool):
        return self._bm25s.tokenize(texts, stopwords="en", stemmer=self._stemmer, return_ids=ids, show_progress=False)

    def _load(self) -> None:
        if self._index is not None:
            return
        folder = self.index_dir
        pages_file = folder / "page_ids.json"
        if pages_file.exists():
            self._index = self._bm25s.BM25.load(folder, show_progress=False)
            self._page_ids = json.loads(pages_file.read_text())
            return
        pages = [p for p in self.store if p.text.strip()]
        index = self._bm25s.BM25(k1=self.k1, b=self.b, method="lucene")
        index.index(self._tokens([p.text for p in pages], ids=True), show_progress=False)
        tmp = self.building_dir()
        index.save(tmp, show_progress=False)
        self.publish_index(tmp, [p.page_id for p in pages])
        self._index, self._page_ids = index, [p.page_id for p in pages]

    def search(self, queries: Sequence[str], k: int) -> list[Ranking]:
        self._load()
        if not queries or not self._page_ids:
            return [[] for _ in queries]
        k = min(k, len(self._page_ids))
        ids, scores = self._index.retrieve(self._tokens(list(queries), ids=False), k=k, show_progress=False)
        return [
            [(self._page_ids[i], float(s)) for i, s in zip(row_ids, row_scores, strict=True) if s > 0]
            for row_ids, row_scores in zip(ids, scores, strict=True)
        ]

    def score(self, queries: Sequence[str], page_ids: Sequence[str]) -> list[float]:
        self._load()
        position = {page_id: i for i, page_id in enumerate(self._page_ids)}
        tokens = self._tokens(list(queries), ids=False)
        scores = []
        for query_tokens, page_id in zip(tokens, page_ids, strict=True):
            i = position.get(page_id)
            scores.append(0.0 if i is None else float(self._index.get_scores(query_tokens)[i]))
        return scores
