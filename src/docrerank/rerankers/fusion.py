"""A learned fusion of a bi-encoder's score with the query's words on the page: a student that starts strong.

A cross-encoder's fresh scoring head cannot learn relevance from a few hundred examples, and a bi-encoder
adapted on them barely moves. This reranker learns only a handful of weights, over features of each
(query, page) pair that need no training themselves:

- ``cosine``: the bi-encoder's cosine of the query and the page's best chunk (what the dense first stage scores);
- ``words``: the share of the query's content words (stemmed, numbers as they are) found on the page;
- ``bm25``: BM25 of the query's content words on the page (term frequencies saturated, the page's length
  normalised), over its best value, so in [0, 1]; the words' document frequencies are those of the pages it
  was trained on (``TermWeights``, saved with it), all words weigh the same before training;
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

import json
import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from docrerank.errors import DocrerankError
from docrerank.pages.content import PageLike
from docrerank.pipeline.evidence import content_words
from docrerank.rerankers.base import PairScore, Reranker, page_text, scored_where_text
from docrerank.rerankers.bi_encoder import BiEncoderReranker

__all__ = ["FEATURES", "START", "FusionReranker", "TermWeights", "pair_features"]

FEATURES = ("cosine", "words", "bm25", "chunk_words", "bigrams", "missing_values")
START = (1.0, 0.0, 0.0, 0.0, 0.0, 0.0)  # the bi-encoder alone
TERM_WEIGHTS_FILE = "term_weights.json"
K1, B = 1.2, 0.75  # Robertson's textbook constants (the BM25 first stage, bm25s's Lucene variant, uses k1 1.5)
_MEMOS: dict[tuple, dict] = {}  # (base, chunking) -> the base's vectors of the texts it has encoded


class _Words:
    """A text's content words (with their counts), and its adjacent content-word pairs as a set."""

    def __init__(self, text: str):
        words = content_words(text)
        self.counts = Counter(words)
        self.words = self.counts.keys()  # a set view: & and `in` as on a set
        self.length = len(words)
        self.bigrams = set(zip(words, words[1:], strict=False))


@dataclass
class TermWeights:
    """Document frequencies of content words over a set of pages, for BM25's weights; empty: all weigh the same."""

    frequencies: dict[str, int] = field(default_factory=dict)
    pages: int = 0
    mean_length: float = 0.0

    @classmethod
    def from_texts(cls, texts: Iterable[str]) -> TermWeights:
        frequencies: Counter[str] = Counter()
        lengths = []
        for text in texts:
            words = content_words(text)
            frequencies.update(set(words))
            lengths.append(len(words))
        return cls(dict(frequencies), len(lengths), sum(lengths) / len(lengths) if lengths else 0.0)

    def idf(self, word: str) -> float:
        n, df = self.pages, self.frequencies.get(word, 0)
        return math.log(1 + (n - df + 0.5) / (df + 0.5))

    def bm25(self, query: _Words, page: _Words) -> float:
        """BM25 of the query's distinct words on the page, over the best a page could score (1: every word,
        often, on a page of mean length)."""
        norm = 1 - B + B * page.length / self.mean_length if self.mean_length else 1.0
        total = best = 0.0
        for word in query.words:
            idf, tf = self.idf(word), page.counts.get(word, 0)
            total += idf * tf * (K1 + 1) / (tf + K1 * norm)
            best += idf * (K1 + 1)
        return total / best if best else 0.0


def pair_features(
    query: str, page: str, chunk: str, cosine: float, cache: dict[str, _Words], weights: TermWeights | None = None
) -> list[float]:
    """The ``FEATURES`` of one pair, given the best chunk and its cosine; ``cache`` keeps each text's words."""
    for text in (query, page, chunk):
        if text not in cache:
            cache[text] = _Words(text)
    q, p, c = cache[query], cache[page], cache[chunk]
    if not q.words:  # a query of stopwords only: nothing to match
        return [cosine] + [0.0] * (len(FEATURES) - 1)
    values = [w for w in q.words if any(ch.isdigit() for ch in w)]
    return [
        cosine,
        len(q.words & p.words) / len(q.words),
        (weights or TermWeights()).bm25(q, p),
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
        term_weights: TermWeights | None = None,
    ):
        """``model``: the bi-encoder whose cosine is the first feature (a short name, a folder, a Hub name;
        default the bundled MiniLM). ``weights``: one per ``FEATURES`` (default: the bi-encoder alone)."""
        self.term_weights = term_weights or TermWeights()
        self.base = model
        self.encoder = BiEncoderReranker(model, chunk_words, stride)
        # the base is never trained here: fusions of the same base (a start and its students) share its vectors
        key = (str(model), self.encoder.chunk_words, self.encoder.stride)
        self.encoder.memo = _MEMOS.setdefault(key, {})
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
            pair_features(query, page_text(page), chunk, cosine, cache, self.term_weights)
            for (query, page), chunk, cosine in zip(pairs, chunks, cosines, strict=True)
        ]
        return np.asarray(rows, dtype=np.float64).reshape(len(pairs), len(FEATURES))

    def score(self, pairs: Sequence[tuple[str, PageLike]]) -> list[float]:
        return [result.score for result in self.score_results(pairs)]

    def score_results(self, pairs: Sequence[tuple[str, PageLike]]) -> list[PairScore]:
        """The weighted sum per pair; a page without text is a failure (ranked last), the rest scored."""
        return scored_where_text(pairs, lambda scorable: (self.features(scorable) @ self.weights + self.bias).tolist())

    def save(self, path) -> None:
        super().save(path)
        weights = {"pages": self.term_weights.pages, "mean_length": self.term_weights.mean_length}
        weights["frequencies"] = dict(sorted(self.term_weights.frequencies.items()))
        (Path(path) / TERM_WEIGHTS_FILE).write_text(json.dumps(weights) + "\n")

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
        path = folder / TERM_WEIGHTS_FILE
        try:
            weights = TermWeights(**json.loads(path.read_text())) if path.is_file() else None
        except (OSError, ValueError, TypeError) as exc:
            raise DocrerankError(f"{path} is not a term-weights document ({exc}): train the reranker again") from None
        return cls(model=base, term_weights=weights, **settings)
