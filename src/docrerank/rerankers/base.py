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
    # a pair's score depends on that pair alone (so it can be cached and batched with any other pairs); the
    # cascade's depends on the other candidates of its query
    pairwise: ClassVar[bool] = True

    @abstractmethod
    def score(self, pairs: Sequence[tuple[str, PageLike]]) -> list[float]:
        """One score per (query, page) pair, in order, computed in batches."""

    def score_sets(self, sets: Sequence[Sequence[tuple[str, PageLike]]]) -> list[list[float]]:
        """Scores of several candidate sets (e.g. the requests a server batches) in one call, one list per set.

        A pair's score depends on that pair alone for every reranker but the cascade, whose scores depend on
        the other candidates of the set; this default scores all the pairs as one batch."""
        flat = self.score([pair for candidates in sets for pair in candidates])
        result, start = [], 0
        for candidates in sets:
            result.append(list(flat[start : start + len(candidates)]))
            start += len(candidates)
        return result

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
        return Reranker.from_settings(json.loads(config_path.read_text()), Path(path), str(config_path))

    @staticmethod
    def from_settings(settings: dict[str, Any], folder: Path, where: str) -> Reranker:
        """The reranker a ``reranker.json`` document describes (``kind`` and the settings); ``folder`` is where
        its weights are and what relative paths in it are relative to; ``where`` names it in errors."""
        settings = dict(settings)
        kind = settings.pop("kind", None)
        if kind == "cross-encoder":
            from docrerank.rerankers.cross_encoder import CrossEncoderReranker

            return CrossEncoderReranker(model=str(folder), **settings)
        if kind == "true-false":
            from docrerank.rerankers.true_false import TrueFalseReranker

            return TrueFalseReranker.from_folder(folder, **settings)
        if kind == "llm":
            from docrerank.backends import load_backend
            from docrerank.rerankers.zero_shot import LLMReranker

            return LLMReranker(load_backend(settings.pop("backend")), **settings)
        if kind == "cascade":
            from docrerank.rerankers.cascade import load_cascade

            return load_cascade(settings, folder, where)
        raise DocrerankError(f"{where}: unknown reranker kind {kind!r}")
