"""Adapting a bi-encoder with the generated data: its rows, training through `docrerank train`, and the saved
model as a reranker and as a first stage."""

from __future__ import annotations

import json

import pytest
import yaml

from docrerank.evaluation.benchmark import TextCorpus
from docrerank.rerankers import BiEncoderReranker, Reranker
from docrerank.retrieval import make_retriever
from docrerank.retrieval.dense import chunk_words
from docrerank.training import read_groups, split_by_document
from docrerank.training.bi_encoder import bi_encoder_rows, prompts
from docrerank.training.evaluator import HeldOutEvaluator
from tests.helpers import invoke_cli

pytestmark = pytest.mark.slow  # the session's training sets (the 839 sample pages ingested)


def test_rows_put_each_page_above_mined_pages_and_each_query_above_its_negative_queries(training_sets):
    groups = read_groups(training_sets.mixture)
    groups = [g for g in groups if g.negative_pages][:6] + [g for g in groups if g.negative_queries][:6]
    reranker = BiEncoderReranker()
    rows = bi_encoder_rows(reranker, groups, negatives=2, seed=0)
    by_query = {g.query: g for g in groups}
    assert rows["query_to_page"] and rows["page_to_query"]
    for row in rows["query_to_page"]:  # the page's best chunk above a chunk of one of its query's mined pages
        group = by_query[row["anchor"]]
        assert row["positive"] in chunk_words(group.page.text, reranker.chunk_words, reranker.stride)
        mined = [c for p in group.negative_pages for c in chunk_words(p.text, reranker.chunk_words, reranker.stride)]
        assert row["negative"] in mined
    for row in rows["page_to_query"]:  # the query above one of its negative queries, for its page's chunk
        group = by_query[row["positive"]]
        assert row["negative"] in group.negative_queries
    for group in groups:  # at most `negatives` of each kind a group
        assert sum(r["anchor"] == group.query for r in rows["query_to_page"]) <= 2
        assert sum(r["positive"] == group.query for r in rows["page_to_query"]) <= 2
    assert bi_encoder_rows(reranker, groups, negatives=2, seed=0) == rows  # seeded
    assert prompts(reranker) is None  # MiniLM has no query / document prompts


@pytest.mark.timeout(900)
def test_train_adapts_a_bi_encoder_that_reranks_and_serves_as_a_first_stage(training_sets, tmp_path):
    """Trained hard (one epoch of batches of 2 groups at lr 2e-4: enough to move MiniLM on ~40 groups), it must
    score its own documents' positive queries above their negative queries more often than the start did; the
    guard runs, and the folder loads as a reranker and as a dense first stage."""
    out = tmp_path / "bi"
    config = tmp_path / "train.yaml"
    settings = {"held_out": 0.3, "epochs": 1, "groups_per_batch": 2, "learning_rate": 2e-4, "depth": 4}
    settings["first_stage"] = "bm25"
    config.write_text(yaml.safe_dump({"train": settings}))
    result = invoke_cli(
        "train", "--data", training_sets.mixture, "--out", out, "--config", config, "--reranker", "bi-encoder"
    )
    assert result.exit_code == 0, result.stdout[-3000:]
    summary = json.loads((out / "training.json").read_text())
    assert summary["steps"] > 0 and summary["held_out_groups"] >= 15
    assert "trained bi-encoder" in result.stdout and "first stage (bm25)" in result.stdout
    trained = Reranker.load(out)
    assert isinstance(trained, BiEncoderReranker)

    trained_on, _ = split_by_document(read_groups(training_sets.mixture), 0.3, seed=0)
    own = HeldOutEvaluator(trained_on[:24], depth=4)
    start, learned = own(BiEncoderReranker()), own(trained)
    print(f"own documents: query contrast {start['query_contrast']:.3f} -> {learned['query_contrast']:.3f}")
    assert learned["query_contrast"] >= start["query_contrast"] + 0.05, (start, learned)

    # the same model as a first stage: it finds training queries' pages among the pages of all the groups
    pages = {g.page.page_id: g.page for g in trained_on} | {p.page_id: p for g in trained_on for p in g.negative_pages}
    retriever = make_retriever(f"dense:{out}", TextCorpus(list(pages.values())))
    rankings = retriever.search([g.query for g in trained_on[:10]], 5)
    found = sum(g.page.page_id in [p for p, _ in r] for g, r in zip(trained_on, rankings, strict=False))
    assert found >= 7, found
