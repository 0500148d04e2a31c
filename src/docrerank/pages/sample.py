"""A few pages spread over a store's documents: what a run on a handful of pages should see."""

from __future__ import annotations

import random

from docrerank.pages.store import PageStore

__all__ = ["SAMPLE_MIN_CHARS", "spread_sample"]

SAMPLE_MIN_CHARS = 500


def spread_sample(store: PageStore, n: int, seed: int, min_chars: int = SAMPLE_MIN_CHARS) -> list[str]:
    """``n`` page ids, one document after another, a random page of each (pages with real text only).

    A run on a few pages then sees several documents rather than the first pages of one.
    """
    rng = random.Random(seed)
    by_doc = {
        doc: [p.page_id for p in store.pages_of(doc) if len(p.text.strip()) >= min_chars] for doc in store.doc_ids
    }
    pools = [rng.sample(ids, len(ids)) for _, ids in sorted(by_doc.items()) if ids]
    rng.shuffle(pools)
    chosen: list[str] = []
    while len(chosen) < n and any(pools):
        for pool in pools:
            if pool and len(chosen) < n:
                chosen.append(pool.pop())
    return chosen
