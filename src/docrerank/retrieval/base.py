"""The first-stage retriever interface, and where an index lives.

Every retriever answers ``search(queries, k)`` with one ranking of page ids per query, batched, and
``score(queries, page_ids)`` with the score of given (query, page) pairs (mining needs the positive page's
score even when it ranks below the top ``k``). Its index is saved beside the page store
(``STORE/derived/index-<name>-<fingerprint>/``) and reused while the fingerprint holds: the store's pages,
the model and the settings. A changed store or setting gets a new folder, so an index never answers for
other pages than it was built from.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from abc import ABC, abstractmethod
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path
from typing import Any

from docrerank.pages import PageStore
from docrerank.retrieval.runs import Ranking

__all__ = ["Retriever", "store_fingerprint"]


def store_fingerprint(store: PageStore) -> str:
    """What the store holds: its page ids and their text, hashed."""
    digest = hashlib.sha256()
    for page in store:
        digest.update(page.page_id.encode())
        digest.update(hashlib.sha256(page.text.encode()).digest())
    return digest.hexdigest()


class Retriever(ABC):
    """Ranks a store's pages for queries."""

    name: str = "retriever"

    def __init__(self, store: PageStore):
        self.store = store

    @abstractmethod
    def settings(self) -> dict[str, Any]:
        """Everything besides the store that decides the index (model, tokenizer, parameters)."""

    @abstractmethod
    def search(self, queries: Sequence[str], k: int) -> list[Ranking]:
        """The ``k`` best pages for each query, best first, as ``(page_id, score)``."""

    def score(self, queries: Sequence[str], page_ids: Sequence[str]) -> list[float]:
        """The score of each ``(queries[i], page_ids[i])`` pair, on the scale of ``search``; 0 for a page the
        retriever does not return at all. This fallback ranks every page; retrievers override it."""
        rankings = self.search(queries, len(self.store))
        return [dict(ranking).get(page_id, 0.0) for ranking, page_id in zip(rankings, page_ids, strict=True)]

    def indexes(self) -> list[Path]:
        """The index folders this retriever reads (for messages)."""
        return [self.index_dir]

    @cached_property
    def index_dir(self) -> Path:
        """``STORE/derived/index-<name>-<fingerprint>``: the store's content and the settings, hashed (once:
        neither changes while the retriever lives)."""
        blob = json.dumps({"store": store_fingerprint(self.store), "settings": self.settings()}, sort_keys=True)
        fingerprint = hashlib.sha256(blob.encode()).hexdigest()[:16]
        return self.store.root / "derived" / f"index-{self.name}-{fingerprint}"

    def building_dir(self) -> Path:
        """The index folder under construction, ``<index_dir>.tmp``: parts saved there survive an interruption."""
        tmp = self.index_dir.with_name(self.index_dir.name + ".tmp")
        tmp.mkdir(parents=True, exist_ok=True)
        return tmp

    def publish_index(self, tmp: Path, page_ids: list[str]) -> None:
        """Finish a built index: write its page ids, drop the saved parts (``part-*``) and move the folder into
        place, so the index is complete or absent."""
        (tmp / "page_ids.json").write_text(json.dumps(page_ids))
        for path in tmp.glob("part-*"):
            path.unlink()
        if self.index_dir.exists():  # a concurrent build finished first: same content
            shutil.rmtree(tmp)
        else:
            tmp.replace(self.index_dir)
