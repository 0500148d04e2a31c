"""The reranker interface: score (query, page) pairs, rank a query's candidate pages, save and load.

A page is given as a ``Page`` of a store, or a ``PageContent`` (text, and an image when one is loaded);
each reranker says which of the two it reads (``uses``). Scores are higher for more relevant pages; their
scale is the reranker's own (a probability for the True/False and cross-encoder rerankers).
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

from docrerank.errors import DocrerankError
from docrerank.prompts.requests import PageLike

__all__ = ["CONFIG_FILE", "Reranker", "page_text"]

CONFIG_FILE = "reranker.json"


def page_text(page: PageLike) -> str:
    """The text of a page in any of the forms a reranker takes."""
    return page if isinstance(page, str) else page.text


class Reranker(ABC):
    """Scores (query, page) pairs; ``rank`` orders one query's candidates."""

    kind: ClassVar[str]
    uses: ClassVar[frozenset[str]]  # "text", "image"

    @abstractmethod
    def score(self, pairs: Sequence[tuple[str, PageLike]]) -> list[float]:
        """One score per (query, page) pair, in order, computed in batches."""

    def rank(self, query: str, pages: Sequence[PageLike], top_k: int | None = None) -> list[tuple[str, float]]:
        """``(page_id, score)`` best first (ties keep the input order); the ``top_k`` best when given."""
        scores = self.score([(query, page) for page in pages])
        ids = [getattr(page, "page_id", None) or str(i) for i, page in enumerate(pages)]
        ranked = sorted(zip(ids, scores, strict=True), key=lambda item: -item[1])
        return ranked[:top_k] if top_k is not None else ranked

    def settings(self) -> dict[str, Any]:
        """What ``save`` writes beside the weights, so ``load`` rebuilds the same reranker."""
        return {}

    def save(self, path: str | Path) -> None:
        """Write the reranker (weights where it has them, and ``reranker.json``) into the folder ``path``."""
        folder = Path(path)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / CONFIG_FILE).write_text(json.dumps({"kind": self.kind, **self.settings()}, indent=2) + "\n")

    @staticmethod
    def load(path: str | Path) -> Reranker:
        """A saved reranker, of whichever kind its ``reranker.json`` names."""
        config_path = Path(path) / CONFIG_FILE
        if not config_path.is_file():
            raise DocrerankError(
                f"{path} holds no saved reranker ({CONFIG_FILE} is missing): give the folder `save` wrote"
            )
        settings = json.loads(config_path.read_text())
        kind = settings.pop("kind", None)
        if kind == "cross-encoder":
            from docrerank.rerankers.cross_encoder import CrossEncoderReranker

            return CrossEncoderReranker(model=str(path), **settings)
        if kind == "true-false":
            from docrerank.rerankers.true_false import TrueFalseReranker

            return TrueFalseReranker.from_folder(path, **settings)
        raise DocrerankError(f"{config_path}: unknown reranker kind {kind!r}")
