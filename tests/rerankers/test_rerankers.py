"""Rerankers on the sample documents' pages: the cross-encoder (bundled MiniLM, fresh head), the zero-shot
True/False reranker (SmolLM2 via llama.cpp: plumbing, not quality), saving and loading, the rerank command."""

from __future__ import annotations

import pytest

from docrerank.backends import load_backend
from docrerank.errors import DocrerankError
from docrerank.pipeline.config import PipelineConfig
from docrerank.rerankers import CrossEncoderReranker, LLMReranker, Reranker
from docrerank.retrieval import BM25Retriever, read_queries, read_trec, write_trec
from docrerank.retrieval.dense import chunk_words
from tests.helpers import run_cli

TINY = {"type": "llamacpp", "model": "smollm2-135m-instruct", "n_ctx": 4096, "n_threads": 1}


@pytest.fixture(scope="module")
def cross_encoder():
    return CrossEncoderReranker()


def test_a_page_scores_as_its_best_chunk_and_rank_orders_by_score(cross_encoder, sample_pages):
    pages = [sample_pages[p] for p in sample_pages.page_ids[:4]]
    query = "Which structural change tests does strucchange implement?"
    scores = cross_encoder.score([(query, page) for page in pages])
    for page, score in zip(pages, scores, strict=True):
        chunks = chunk_words(page.text, 128, 96)
        direct = cross_encoder.model.predict([(query, c) for c in chunks], show_progress_bar=False)
        assert score == pytest.approx(float(max(direct)), abs=1e-5)
    ranked = cross_encoder.rank(query, pages, top_k=3)
    assert len(ranked) == 3 and [s for _, s in ranked] == sorted(scores, reverse=True)[:3]
    assert {p for p, _ in ranked} <= {page.page_id for page in pages}


def test_the_fresh_head_is_seeded_and_a_saved_reranker_loads_with_the_same_scores(cross_encoder, tmp_path):
    pairs = [("What is a structural break?", "A structural break is a change in a regression's coefficients.")]
    assert CrossEncoderReranker().score(pairs) == pytest.approx(cross_encoder.score(pairs))
    assert CrossEncoderReranker(seed=1).score(pairs) != pytest.approx(cross_encoder.score(pairs))
    cross_encoder.save(tmp_path / "saved")
    loaded = Reranker.load(tmp_path / "saved")
    assert isinstance(loaded, CrossEncoderReranker) and loaded.score(pairs) == pytest.approx(cross_encoder.score(pairs))
    with pytest.raises(DocrerankError, match="holds no saved reranker"):
        Reranker.load(tmp_path)


def test_zero_shot_reranker_scores_p_true_and_names_a_page_without_text(vignette_store):
    config = PipelineConfig.model_validate({"backends": {"generator": TINY, "verifier": TINY}})
    reranker = LLMReranker(load_backend(config.backends["verifier"]), max_page_chars=800)
    pages = [vignette_store[p] for p in vignette_store.page_ids]
    ranked = reranker.rank("At which observation is the structural break detected?", pages)
    assert len(ranked) == 3 and all(0.0 <= s <= 1.0 for _, s in ranked)
    assert [s for _, s in ranked] == sorted((s for _, s in ranked), reverse=True)
    empty = pages[0].model_copy(update={"text": " "})
    with pytest.raises(DocrerankError, match="has no text"):
        reranker.score([("a question", empty)])


def test_rerank_command_reorders_the_first_stage_and_names_unknown_pages(sample_pages, mining_queries, tmp_path):
    queries, _ = read_queries(mining_queries, sample_pages)
    first = BM25Retriever(sample_pages).search([q.text for q in queries], 5)
    run = {q.query_id: ranking for q, ranking in zip(queries, first, strict=True)}
    run[queries[0].query_id] = run[queries[0].query_id] + [("f" * 32, 0.1)]  # a page the store does not hold
    first_path = tmp_path / "first.trec"
    write_trec(run, first_path)
    out = tmp_path / "reranked.trec"
    result = run_cli(
        "rerank",
        "--pages",
        sample_pages.root,
        "--queries",
        mining_queries,
        "--run",
        first_path,
        "--out",
        out,
        "--depth",
        "6",
        "--top-k",
        "3",
        "--reranker",
        "cross-encoder",
    )
    assert result.exit_code == 1 and "1 page ids" in result.stderr and "not in the store" in result.stderr
    reranked, errors = read_trec(out)
    assert errors == [] and set(reranked) == set(run)
    for query_id, ranking in reranked.items():
        assert len(ranking) == 3 and {p for p, _ in ranking} <= {p for p, _ in run[query_id]} - {"f" * 32}
    assert "MRR@6 over 10 queries" in result.stdout
    assert all(0 < s < 1 for r in reranked.values() for _, s in r)  # the cross-encoder's sigmoid, not BM25's
