"""Choosing K negatives per positive from the verified survivors.

``random`` (seeded), ``most_similar`` (closest to the positive's wording: the hardest to tell apart by
surface form), or ``hardest`` (highest yes-probability the verifier gave while still judging it
unanswerable: closest to the decision boundary). Pages with fewer survivors keep what they have.
"""

from __future__ import annotations

import random
from typing import Literal

from rapidfuzz import fuzz

from docrerank.pipeline.records import QueryRecord

__all__ = ["select_negatives"]


def select_negatives(
    positive: QueryRecord,
    negatives: list[QueryRecord],
    k: int,
    strategy: Literal["random", "most_similar", "hardest"],
    rng: random.Random,
) -> tuple[list[QueryRecord], list[QueryRecord]]:
    """The ``k`` chosen negatives and the rest, each list in a deterministic order."""
    ordered = sorted(negatives, key=lambda r: r.query_id)
    if strategy == "random":
        ranked = rng.sample(ordered, len(ordered))
    elif strategy == "most_similar":
        ranked = sorted(ordered, key=lambda r: -fuzz.ratio(r.text.lower(), positive.text.lower()))
    elif strategy == "hardest":
        ranked = sorted(ordered, key=lambda r: -max(r.verdict.p_yes) if r.verdict and r.verdict.p_yes else 0.0)
    else:
        raise ValueError(f"unknown selection strategy {strategy!r}: use random, most_similar or hardest")
    return ranked[:k], ranked[k:]
