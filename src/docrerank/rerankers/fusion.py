"""A learned fusion of a bi-encoder's score with the query's words on the page: a student that starts strong.

A cross-encoder's fresh scoring head cannot learn relevance from a few hundred examples, and a bi-encoder
adapted on them barely moves. This reranker learns only a handful of weights, over features of each
(query, page) pair that need no training themselves:

- ``cosine``: the bi-encoder's cosine of the query and the page's best chunk (what the dense first stage scores);
- ``words``: the share of the query's content words (stemmed, numbers as they are) found on the page;
- ``chunk_words``: the same share within the best chunk (are they together, or scattered over the page);
- ``bigrams``: the share of the query's adjacent content-word pairs that are adjacent on the page too;
- ``missing_values``: how many of the query's numbers and names with digits the page does not hold.

Its untrained start is the bi-encoder alone (weight 1 on ``cosine``, 0 elsewhere), so it ranks as the dense
first stage before any training. The generated negative *queries* are what teach the other weights: a
negative differs from its page's positive by one value or a few words, which the cosine barely sees and the
word features do. ``docrerank train --reranker fusion [--model BASE]`` fits the weights with the project's
group losses (``training.fusion``); a saved one is a ``reranker.json`` holding them and the base's name.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from docrerank.errors import DocrerankError
from docrerank.pages.content import PageLike
from docrerank.pipeline.evidence import content_words
from docrerank.rerankers.base import PairScore, Reranker, page_text, scored_where_text
from docrerank.rerankers.bi_encoder import BiEncoderReranker

__all__ = ["FEATURES", "FusionReranker", "pair_features"]

FEATURES = ("cosine", "words", "chunk_words", "bigrams", "missing_values")
START = (1.0, 0.0, 0.0, 0.0, 0.0)  # the bi-encoder alone


class _Words:
    """A text's content words as a set, and its adjacent content-word pairs as a set."""

    def __init__(self, text: str):
        words = content_words(text)
        self.words = set(words)
        self.bigrams = set(zip(words, words[1:], strict=False))


def pair_features(query: str, page: str, chunk: str, cosine: float, cache: dict[str, _Words]) -> list[float]:
    """The ``FEATURES`` of one pair, given the best chunk and its cosine; ``cache`` keeps each text's words."""
    for text in (query, page, chunk):
        if text not in cache:
            cache[text] = _Words(text)
    q, p, c = cache[query], cache[page], cache[chunk]
    if not q.words:  # a query of stopwords only: nothing to match
        return [cosine, 0.0, 0.0, 0.0, 0.0]
    values = [w for w in q.words if any(ch.isdigit() for ch in w)]
    return [
        cosine,
        len(q.words & p.words) / len(q.words),
        len(q.words & c.words) / len(q.words),
        len(q.bigrams & p.bigrams) / len(q.bigrams) if q.bigrams else 0.0,
        float(sum(v not in p.words for v in values)),
    ]


class FusionReranker(Reranker):
    kind = "fusion"
    uses = frozenset({"text"})

    def __init__(
        self,
        model: str | None = None,
        weights: Sequence[float] | None = None,
        bias: float = 0.0,
        chunk_words: int | None = None,
        stride: int | None = None,
    ):
        """``model``: the bi-encoder whose cosine is the first feature (a short name, a folder, a Hub name;
        default the bundled MiniLM). ``weights``: one per ``FEATURES`` (default: the bi-encoder alone)."""
        self.base = model
        self.encoder = BiEncoderReranker(model, chunk_words, stride)
        self.weights = np.asarray(weights if weights is not None else START, dtype=np.float64)
        if self.weights.shape != (len(FEATURES),):
            raise DocrerankError(
                f"a fusion reranker takes {len(FEATURES)} weights ({', '.join(FEATURES)}), not {self.weights.size}: "
                "train it again with this version"
            )
        self.bias = float(bias)

    def features(self, pairs: Sequence[tuple[str, PageLike]]) -> np.ndarray:
        """One row of ``FEATURES`` per pair (every page must have text)."""
        cosines, chunks = self.encoder.best_chunks(pairs)
        cache: dict[str, _Words] = {}
        rows = [
            pair_features(query, page_text(page), chunk, cosine, cache)
            for (query, page), chunk, cosine in zip(pairs, chunks, cosines, strict=True)
        ]
        return np.asarray(rows, dtype=np.float64).reshape(len(pairs), len(FEATURES))

    def score(self, pairs: Sequence[tuple[str, PageLike]]) -> list[float]:
        return [result.score for result in self.score_results(pairs)]

    def score_results(self, pairs: Sequence[tuple[str, PageLike]]) -> list[PairScore]:
        """The weighted sum per pair; a page without text is a failure (ranked last), the rest scored."""
        return scored_where_text(pairs, lambda scorable: (self.features(scorable) @ self.weights + self.bias).tolist())

    def settings(self) -> dict[str, Any]:
        return {
            "model": self.base,
            "weights": [round(float(w), 6) for w in self.weights],
            "bias": round(self.bias, 6),
            "features": list(FEATURES),
            "chunk_words": self.encoder.chunk_words,
            "stride": self.encoder.stride,
        }

    @classmethod
    def from_saved(cls, settings: dict[str, Any], folder: Path, where: str, *, allow_remote: bool = False) -> Reranker:
        """The weights and the base bi-encoder's name from ``reranker.json`` (a relative base is in ``folder``)."""
        settings = dict(settings)
        if list(settings.pop("features", FEATURES)) != list(FEATURES):
            raise DocrerankError(f"{where}: made with other features than {', '.join(FEATURES)}: train it again")
        base = settings.pop("model", None)
        if base and not Path(base).is_absolute() and (folder / base).is_dir():
            base = str(folder / base)
        return cls(model=base, **settings)
