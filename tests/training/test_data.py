"""Training groups from every dataset form the project writes, and the split by document."""

from __future__ import annotations

import json

import pytest

from docrerank.errors import DocrerankError
from docrerank.training import read_groups, split_by_document
from docrerank.training.data import TrainingGroup

pytestmark = pytest.mark.slow


def _by_query(groups: list[TrainingGroup]) -> dict[str, TrainingGroup]:
    return {g.query: g for g in groups}


def test_export_groups_carry_the_pages_negative_queries(training_sets):
    groups = read_groups(training_sets.export)
    selected = [json.loads(line) for line in (training_sets.export_jsonl).read_text().splitlines()]
    assert len(groups) == len(selected) == 70
    by_query = _by_query(groups)
    for row in selected:
        group = by_query[row["query"]]
        assert group.page.page_id == row["page_id"] and group.doc_id == row["doc_id"]
        assert list(group.negative_queries) == [n["text"] for n in row["negatives"]]
        assert group.page.text == training_sets.store[row["page_id"]].text
        assert group.page.image is None  # text rerankers never decode images
    with_images = read_groups(training_sets.export, images=True)
    assert with_images[0].page.image is not None and with_images[0].page.image.data[:4] == b"\x89PNG"


def test_the_export_jsonl_needs_the_store_and_gives_the_same_groups(training_sets):
    with pytest.raises(DocrerankError, match="give the page store"):
        read_groups(training_sets.export_jsonl)
    from_jsonl = read_groups(training_sets.export_jsonl, training_sets.store)
    assert _by_query(from_jsonl) == _by_query(read_groups(training_sets.export))


def test_mixture_groups_hold_mined_pages_or_generated_queries(training_sets):
    groups = read_groups(training_sets.mixture)
    assert groups and all(bool(g.negative_pages) != bool(g.negative_queries) for g in groups)
    mined = [g for g in groups if g.negative_pages]
    assert mined and all(p.page_id != g.page.page_id and p.text for g in mined for p in g.negative_pages)
    assert _by_query(read_groups(training_sets.mixture_jsonl)) == _by_query(groups)


def test_pairs_become_groups_again(training_sets):
    groups = read_groups(training_sets.pairs)
    export = _by_query(read_groups(training_sets.export))
    assert len(groups) == len(export)
    by_page: dict[str, set[str]] = {}
    for group in groups:  # pairs.jsonl writes a negative shared by two positives of a page once
        assert set(group.negative_queries) <= set(export[group.query].negative_queries)
        assert group.page.text == export[group.query].page.text
        by_page.setdefault(group.page.text, set()).update(group.negative_queries)
    for group in export.values():
        assert set(group.negative_queries) <= by_page[group.page.text]


def test_pairs_of_a_group_put_the_positive_first_and_draw_negatives_of_both_kinds():
    group = TrainingGroup("q", _page("p", "page"), "d", ("n1", "n2"), (_page("x", "other"), _page("y", "other2")))
    pairs = group.pairs(negatives=3, seed=1)
    assert pairs[0] == ("q", group.page, 1) and len(pairs) == 4 and all(label == 0 for *_, label in pairs[1:])
    assert pairs == group.pairs(negatives=3, seed=1)
    assert len(group.pairs()) == 5


def test_bad_lines_are_named(tmp_path):
    bad = tmp_path / "pairs.jsonl"
    bad.write_text('{"query": "q", "text": "t", "label": 1}\nnot json\n')
    with pytest.raises(DocrerankError, match=r"pairs.jsonl:2: not a JSON line"):
        read_groups(bad)
    orphan = tmp_path / "orphan.jsonl"
    orphan.write_text('{"query": "q", "text": "t", "label": 0}\n')
    with pytest.raises(DocrerankError, match=r"orphan.jsonl:1: a negative pair before any positive"):
        read_groups(orphan)
    notes = tmp_path / "notes.txt"
    notes.write_text("not a dataset")
    with pytest.raises(DocrerankError, match="neither a saved dataset"):
        read_groups(notes)


def test_split_by_document_keeps_documents_whole_and_is_seeded(training_sets):
    groups = read_groups(training_sets.export)
    train, held = split_by_document(groups, 0.2, seed=3)
    assert {g.doc_id for g in train}.isdisjoint({g.doc_id for g in held})
    assert len(train) + len(held) == len(groups)
    assert len({g.doc_id for g in held}) == 7  # 20% of 35 documents
    assert split_by_document(groups, 0.2, seed=3) == (train, held)
    assert split_by_document(groups, 0.2, seed=4)[1] != held
    assert split_by_document(groups, 0.0) == (groups, [])


def _page(page_id, text):
    from docrerank.pages.content import PageContent

    return PageContent(text=text, page_id=page_id)
