"""Data-quality measures of a finished run: how hard and how diverse its negatives are.

Computed on the run's final output (the ``selected`` stage), per negative against its positive and per
positive among its negatives, overall and by what made the negative (``QueryRecord.made_by()``:
``llm:controlled:<property>``, ``rule:<kind>``, ``llm:freeform``, ``given``):

hardness
    ``lexical``: the content-word Jaccard overlap with the positive (the filters' measure, typos counted as
    one word); ``char``: the normalised edit similarity of the two texts (rapidfuzz Indel ratio, 0-1);
    ``embedding``: the cosine similarity of their sentence embeddings (the bundled all-MiniLM-L6-v2 by
    default). A hard negative scores high on all three: close in form and topic, different in what it asks.
diversity
    ``distinct_1`` / ``distinct_2``: distinct word unigrams / bigrams over all the words of a positive's
    negatives (1.0: no word repeated); ``pairwise_embedding`` / ``pairwise_lexical``: the mean similarity
    between two negatives of the same positive (lower: more diverse). Averaged over positives with two
    or more negatives; ``corpus_distinct_2`` is distinct-2 over every negative of the run.

Verifier agreement and per-property yield come from the run's stage records (``pipeline.stats``).
"""

from __future__ import annotations

from collections import defaultdict
from itertools import combinations
from statistics import fmean, median
from typing import Any

import numpy as np
from rapidfuzz import fuzz

from docrerank.embeddings import DEFAULT_EMBEDDER, embed
from docrerank.pipeline.filters import content_overlap, normalize
from docrerank.pipeline.records import QueryRecord

__all__ = ["distinct_n", "quality_measures"]


def distinct_n(texts: list[str], n: int) -> float | None:
    """Distinct n-grams / all n-grams over the normalised words of ``texts`` (None when there are none)."""
    grams = [
        tuple(words[i : i + n]) for words in (normalize(t).split() for t in texts) for i in range(len(words) - n + 1)
    ]
    return round(len(set(grams)) / len(grams), 4) if grams else None


def _summary(values: list[float]) -> dict[str, float] | None:
    return {"mean": round(fmean(values), 4), "median": round(median(values), 4), "n": len(values)} if values else None


def quality_measures(records: list[QueryRecord], embedder: str | None = DEFAULT_EMBEDDER) -> dict[str, Any]:
    """Hardness and diversity of the negatives in ``records`` (a run's ``selected`` output).

    ``embedder=None`` skips the embedding measures (no model is loaded).
    """
    positives = {r.query_id: r for r in records if r.kind == "positive"}
    negatives = [r for r in records if r.kind == "negative" and r.parent_id in positives]
    by_parent: dict[str, list[QueryRecord]] = defaultdict(list)
    for negative in negatives:
        by_parent[negative.parent_id].append(negative)

    vectors: dict[str, np.ndarray] = {}
    if embedder and negatives:
        texts = sorted({r.text for r in negatives} | {positives[r.parent_id].text for r in negatives})
        vectors = dict(zip(texts, embed(texts, embedder), strict=True))

    def cosine(a: str, b: str) -> float:
        return float(vectors[a] @ vectors[b])

    hardness: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for negative in negatives:
        positive = positives[negative.parent_id].text
        scores = {
            "lexical": content_overlap(negative.text, positive),
            "char": fuzz.ratio(normalize(negative.text), normalize(positive)) / 100.0,
        }
        if vectors:
            scores["embedding"] = cosine(negative.text, positive)
        for group in ("all", negative.made_by()):
            for name, value in scores.items():
                hardness[group][name].append(value)

    diversity: dict[str, list[float]] = defaultdict(list)
    for group in by_parent.values():
        texts = [r.text for r in group]
        if len(texts) < 2:
            continue
        diversity["distinct_1"].append(distinct_n(texts, 1))
        diversity["distinct_2"].append(distinct_n(texts, 2))
        pairs = list(combinations(texts, 2))
        diversity["pairwise_lexical"].append(fmean(content_overlap(a, b) for a, b in pairs))
        if vectors:
            diversity["pairwise_embedding"].append(fmean(cosine(a, b) for a, b in pairs))
    return {
        "embedder": embedder,
        "positives": len(positives),
        "negatives": len(negatives),
        "hardness": {
            group: {name: _summary(values) for name, values in scores.items()}
            for group, scores in sorted(hardness.items(), key=lambda item: (item[0] != "all", item[0]))
        },
        "diversity": {
            "positives_with_2_or_more": len(diversity["distinct_1"]),
            **{name: _summary([v for v in values if v is not None]) for name, values in diversity.items()},
            "corpus_distinct_2": distinct_n([r.text for r in negatives], 2),
        },
    }
