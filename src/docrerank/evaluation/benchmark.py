"""The one in-memory form every benchmark is loaded into: a corpus of pages, queries, and graded qrels.

Pages are ``Page``s of a page store (image and text; a ViDoRe or Real-MM-RAG table and a ``docrerank
ingest`` store both end up in one), or ``PageContent`` text pages of a text corpus (BEIR). A ``TextCorpus``
offers what the first-stage retrievers read of a page store (iteration over pages with ``page_id`` and
``text``, ``len``, and a ``root`` whose ``derived/`` folder keeps their indexes), so BM25, dense and hybrid
retrieval run on a BEIR corpus unchanged.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from docrerank.errors import InputError
from docrerank.pages import PageStore
from docrerank.pages.content import PageContent, PageLike
from docrerank.samples import default_cache_dir

__all__ = ["Benchmark", "TextCorpus"]


class TextCorpus:
    """Text pages in memory; its retrieval indexes live under ``$DOCRERANK_CACHE/benchmarks/<content hash>``."""

    def __init__(self, pages: list[PageContent], root: Path | None = None):
        self.pages = {page.page_id: page for page in pages}
        if root is None:
            digest = hashlib.sha256()
            for page in pages:
                digest.update(f"{page.page_id}\0{page.text}\0".encode())
            root = default_cache_dir() / "benchmarks" / digest.hexdigest()[:16]
        self.root = Path(root)

    def __iter__(self) -> Iterator[PageContent]:
        return iter(self.pages.values())

    def __len__(self) -> int:
        return len(self.pages)

    def __contains__(self, page_id: object) -> bool:
        return page_id in self.pages

    def __getitem__(self, page_id: str) -> PageContent:
        return self.pages[page_id]


@dataclass
class Benchmark:
    """Queries over a corpus with relevance judgements (``qrels[query_id][page_id]``, graded, > 0 relevant)."""

    name: str
    corpus: PageStore | TextCorpus
    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]
    notes: list[str] = field(default_factory=list)  # what loading left out, and why
    source: dict[str, str] = field(default_factory=dict)  # how to load it again: {"format", "path", ...}
    skipped: list[InputError] = field(default_factory=list)  # bad lines of its files (FILE:LINE), left out

    def page(self, page_id: str, image: bool = False) -> PageLike:
        """The page as rerankers take it: a store's ``Page`` (with its image loaded when ``image``, for the
        rerankers that read images), or a text corpus's ``PageContent``."""
        page = self.corpus[page_id]
        if image and isinstance(self.corpus, PageStore):
            return PageContent.from_page(page, self.corpus, image=True)
        return page

    @property
    def judged_queries(self) -> list[str]:
        """The query ids with at least one relevant page: the ones metrics are averaged over."""
        return [q for q in self.queries if any(grade > 0 for grade in self.qrels.get(q, {}).values())]
