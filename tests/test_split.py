"""The sample documents' train/test split: generation for training reads train documents only."""

import json

import pytest

from docrerank.errors import DocrerankError
from docrerank.pages.sample import spread_sample
from docrerank.samples.split import train_documents, train_pages


@pytest.mark.slow
def test_train_pages_keep_the_spread_order_of_the_train_documents_only(sample_pages, tmp_path):
    docs = sorted(sample_pages.doc_ids)
    split = tmp_path / "split.json"
    split.write_text(json.dumps({"documents": {d: {"split": "test" if d == docs[0] else "train"} for d in docs}}))
    pages = train_pages(sample_pages, split)
    assert pages and all(sample_pages.get(pid).doc_id != docs[0] for pid in pages)
    spread = spread_sample(sample_pages, len(sample_pages), seed=0)
    assert pages == [pid for pid in spread if sample_pages.get(pid).doc_id != docs[0]]
    assert any(sample_pages.get(pid).doc_id == docs[0] for pid in spread)  # the test document had pages


def test_an_unreadable_split_file_is_named_with_where_it_ships(tmp_path):
    bad = tmp_path / "split.json"
    bad.write_text("{not json")
    with pytest.raises(DocrerankError, match="split.json: not a readable split file.*bench/data"):
        train_documents(bad)
