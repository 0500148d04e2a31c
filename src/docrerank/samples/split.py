"""The sample documents' train/test split (bench/data/quality-split.json): training data is generated on
train documents only, so the quality benchmark's questions, all on test documents, stay held out."""

from __future__ import annotations

import json
from pathlib import Path

from docrerank.errors import DocrerankError
from docrerank.pages import PageStore
from docrerank.pages.sample import spread_sample

__all__ = ["train_documents", "train_pages"]


def train_documents(split_file: Path) -> set[str]:
    """The doc ids the split file marks ``train``."""
    try:
        documents = json.loads(Path(split_file).read_text())["documents"]
    except (OSError, ValueError, KeyError) as exc:
        raise DocrerankError(f"{split_file}: not a readable split file ({exc}); it ships in bench/data") from None
    return {doc for doc, entry in documents.items() if entry["split"] == "train"}


def train_pages(store: PageStore, split_file: Path) -> list[str]:
    """Every train document's pages with text, in ``spread_sample``'s seeded order (one document after
    another): a prefix of it is a smaller set, so a set grows by extending the prefix."""
    train = train_documents(split_file)
    return [pid for pid in spread_sample(store, len(store), seed=0) if store.get(pid).doc_id in train]
