"""Rerankers on the sample documents' pages: the cross-encoder (bundled MiniLM, fresh head), the zero-shot
True/False reranker (SmolLM2 via llama.cpp: plumbing, not quality), saving and loading, the rerank command."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml
from rich.console import Console

from docrerank.backends import load_backend
from docrerank.cli.rerank import DEFAULT_RERANKER, RERANKERS, make_reranker, say_default_chain
from docrerank.cli.train import TRAINABLE
from docrerank.errors import DocrerankError
from docrerank.pipeline.config import PipelineConfig
from docrerank.rerankers import (
    RERANKER_KINDS,
    CascadeReranker,
    CrossEncoderReranker,
    FusionReranker,
    LLMReranker,
    Reranker,
    default_chain,
)
from docrerank.rerankers.base import UNSCORED, UntrustedRerankerError
from docrerank.rerankers.fusion import START
from docrerank.retrieval import BM25Retriever, read_queries, read_trec, write_trec
from docrerank.retrieval.dense import chunk_words
from tests.helpers import invoke_cli, run_cli, tiny_llm

TINY = tiny_llm()


@pytest.fixture(scope="module")
def cross_encoder():
    return CrossEncoderReranker()


@pytest.mark.slow
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


@pytest.mark.slow  # three cross-encoders loaded (~4 s)
def test_the_fresh_head_is_seeded_and_a_saved_reranker_loads_with_the_same_scores(cross_encoder, tmp_path):
    pairs = [("What is a structural break?", "A structural break is a change in a regression's coefficients.")]
    assert CrossEncoderReranker().score(pairs) == pytest.approx(cross_encoder.score(pairs))
    assert CrossEncoderReranker(seed=1).score(pairs) != pytest.approx(cross_encoder.score(pairs))
    cross_encoder.save(tmp_path / "saved")
    loaded = Reranker.load(tmp_path / "saved")
    assert isinstance(loaded, CrossEncoderReranker) and loaded.score(pairs) == pytest.approx(cross_encoder.score(pairs))
    with pytest.raises(DocrerankError, match="holds no saved reranker"):
        Reranker.load(tmp_path)


@pytest.mark.slow
def test_zero_shot_reranker_scores_p_true_and_a_page_without_text_is_a_per_pair_failure_ranked_last(vignette_store):
    """One page without text used to stop the whole call (and `docrerank rerank` with it)."""
    config = PipelineConfig.model_validate({"backends": {"generator": TINY, "verifier": TINY}})
    reranker = LLMReranker(load_backend(config.backends["verifier"]), max_page_chars=800)
    pages = [vignette_store[p] for p in vignette_store.page_ids]
    query = "At which observation is the structural break detected?"
    ranked = reranker.rank(query, pages)
    assert len(ranked) == 3 and all(0.0 <= s <= 1.0 for _, s in ranked)
    assert [s for _, s in ranked] == sorted((s for _, s in ranked), reverse=True)
    empty = pages[1].model_copy(update={"text": " \n"})
    results = reranker.score_results([(query, empty), (query, pages[0])])  # one pair reaches the model
    assert [r.ok for r in results] == [False, True]
    assert results[0].score == UNSCORED and "has no text" in results[0].error and empty.page_id in results[0].error
    assert results[1].score == pytest.approx(reranker.score([(query, pages[0])])[0], abs=1e-4)  # as if alone
    reordered, failed = reranker.rank_results(query, [empty])
    assert reordered == [(empty.page_id, UNSCORED)] and failed == {empty.page_id: results[0].error}


@pytest.mark.slow  # the vignette's pages through the cross-encoder (~6 s)
def test_cross_encoder_a_page_without_text_is_a_per_pair_failure_ranked_last(cross_encoder, vignette_store):
    pages = [vignette_store[p] for p in vignette_store.page_ids]
    empty = pages[1].model_copy(update={"text": ""})
    query = "At which observation is the structural break detected?"
    results = cross_encoder.score_results([(query, pages[0]), (query, empty), (query, pages[2])])
    assert [r.ok for r in results] == [True, False, True] and "has no text" in results[1].error
    alone = cross_encoder.score([(query, pages[0]), (query, pages[2])])
    assert [results[0].score, results[2].score] == pytest.approx(alone)
    assert cross_encoder.rank(query, [empty, pages[0]])[-1] == (empty.page_id, UNSCORED)
    # only pages without text: a failure each (the old code scored the empty text as if it were a page)
    assert cross_encoder.score([(query, ""), (query, "  ")]) == [UNSCORED, UNSCORED]
    # and through a reranker's candidate sets (what a server batches)
    sets = cross_encoder.score_set_results([[(query, pages[0])], [(query, empty), (query, pages[2])]])
    assert [[r.ok for r in s] for s in sets] == [[True], [False, True]]


@pytest.mark.slow
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
        "--trec",
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


@pytest.fixture(scope="module")
def store_with_an_empty_page(tmp_path_factory):
    """Two text pages and a blank one (no text layer, no OCR): a page no text reranker can score."""
    from docrerank.pages import IngestSettings, PageStore, ingest
    from tests.helpers import make_pdf, text_page

    folder = tmp_path_factory.mktemp("empty-page")
    pdf = make_pdf(
        folder / "doc.pdf",
        [
            "The structural break is detected at observation 42 of the series.\n" + text_page("Breaks"),
            "",
            "Bananas are yellow when ripe.\n" + text_page("Fruit"),
        ],
    )
    ingest([pdf], folder / "store", IngestSettings(ocr="never"))
    store = PageStore.open(folder / "store")
    assert sorted(bool(p.text.strip()) for p in store) == [False, True, True]
    return store


def _first_stage(store, tmp_path):
    queries = tmp_path / "queries.jsonl"
    queries.write_text(json.dumps({"query_id": "q1", "query": "At which observation is the break detected?"}) + "\n")
    blank = next(p.page_id for p in store if not p.text.strip())
    order = [blank] + [p.page_id for p in store if p.page_id != blank]  # the blank page first
    write_trec({"q1": [(p, 1.0 / (i + 1)) for i, p in enumerate(order)]}, tmp_path / "first.trec")
    return queries, tmp_path / "first.trec", blank


def test_rerank_with_reranker_none_keeps_the_first_stage_order_and_serve_refuses_it(store_with_an_empty_page, tmp_path):
    """`--reranker none` is the first stage's order, said so; `serve` has nothing to serve with it."""
    store = store_with_an_empty_page
    queries, first, _ = _first_stage(store, tmp_path)
    out = tmp_path / "kept.trec"
    args = ("--pages", store.root, "--queries", queries, "--trec", first, "--out", out)
    result = invoke_cli("rerank", *args, "--reranker", "none")
    assert result.exit_code == 0, result.stdout
    assert "the first stage's order is kept" in " ".join(result.stdout.split())
    assert read_trec(out)[0] == read_trec(first)[0]  # the same pages, order and scores
    served = run_cli("serve", "--port", "9", "--reranker", "none")  # through main(): a DocrerankError exits 2
    said = " ".join(served.stderr.split())
    assert served.exit_code == 2 and "serve needs a reranker" in said and "--reranker llm (the embedded 1.5B" in said


def test_the_default_reranker_is_the_tested_chain_with_the_fusion_shipped_as_fitted():
    """Without --reranker: the cascade that passed the declared test, its student the fusion fitted for it
    (loaded from the package, nothing scored), the teacher the built-in 1.5B reading the focused view, top 3."""
    chain = make_reranker(DEFAULT_RERANKER, None, None, "verifier")
    assert isinstance(chain, CascadeReranker) and chain.top == default_chain.TOP == 3
    assert isinstance(chain.student, FusionReranker) and chain.student.base == "embeddinggemma"
    assert chain.student.term_weights.pages > 0 and not np.allclose(chain.student.weights, START)  # fitted
    fit = json.loads((default_chain.STUDENT / "training.json").read_text())
    assert fit["saved_to"] == "runs/quality-reworded100/fusion-embeddinggemma-reworded-pull1"  # the tested fit
    assert (fit["settings"]["regularization"], fit["settings"]["first_stage"]) == (1.0, "dense:embeddinggemma")
    assert isinstance(chain.teacher, LLMReranker) and chain.teacher.page_view == "focused"
    assert chain.teacher.backend.config.model == "qwen2.5-coder-1.5b-instruct"
    assert make_reranker("cascade", None, None, "verifier", page_view="whole").teacher.page_view == "whole"
    assert make_reranker("llm", None, None, "verifier").page_view == "whole"  # as its figures were measured
    said = Console(record=True, width=10_000)
    say_default_chain("cascade", None, said, cascade_top=3, page_view="focused", depth=10)
    say_default_chain("cascade", "my-student", said, cascade_top=5)  # not the default chain: nothing said
    text = said.export_text()
    assert text.count("the default chain: the fusion trained") == 1 and "untested" not in text
    say_default_chain("cascade", None, said, cascade_top=5, page_view="focused", depth=20)
    assert "untested settings: cascade_top 5 (tested: 3), depth 20 (tested: 10)" in said.export_text()


@pytest.mark.slow
def test_rerank_command_with_the_llm_reranker_ranks_a_page_without_text_last(store_with_an_empty_page, tmp_path):
    store = store_with_an_empty_page
    queries, first, blank = _first_stage(store, tmp_path)
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"backends": {"generator": TINY, "verifier": TINY}}))
    out = tmp_path / "reranked.trec"
    result = run_cli(
        "rerank", "--pages", store.root, "--queries", queries, "--trec", first, "--out", out, "--config", config,
        "--reranker", "llm",
    )  # fmt: skip
    assert result.exit_code == 1, result.stderr[-2000:]
    assert "ranked last" in result.stderr and blank in result.stderr and "has no text" in result.stderr
    reranked, errors = read_trec(out)
    assert not errors and [p for p, _ in reranked["q1"]][-1] == blank and len(reranked["q1"]) == 3
    assert reranked["q1"][-1][1] == float("-inf") and all(0 <= s <= 1 for _, s in reranked["q1"][:-1])


REMOTE = {
    "type": "openai",
    "base_url": "http://reranker-host.invalid:9/v1",  # RFC 6761: never resolves, so nothing is ever sent to it
    "model": "m",
    "api_key_env": "DOCRERANK_TEST_KEY",
    "timeout_s": 2,
    "max_retries": 0,
}


def test_a_saved_reranker_that_sends_a_key_off_this_machine_or_runs_remote_code_needs_allow_remote(tmp_path):
    LLMReranker(load_backend(REMOTE)).save(tmp_path / "remote")
    with pytest.raises(UntrustedRerankerError) as refused:
        Reranker.load(tmp_path / "remote")
    message = str(refused.value)
    assert str(tmp_path / "remote") in message and "$DOCRERANK_TEST_KEY" in message and REMOTE["base_url"] in message
    assert "--trust-reranker" in message and "allow_remote=True" in message
    loaded = Reranker.load(tmp_path / "remote", allow_remote=True)
    assert isinstance(loaded, LLMReranker) and loaded.backend.config.base_url == REMOTE["base_url"]

    # this machine, or no key: nothing to allow
    for name, update in {
        "loopback": {"base_url": "http://127.0.0.1:8000/v1"},
        "localhost": {"base_url": "http://localhost:8000/v1"},
        "ipv6": {"base_url": "http://[::1]:8000/v1"},
        "no-key": {"api_key_env": None},
    }.items():
        LLMReranker(load_backend({**REMOTE, **update})).save(tmp_path / name)
        assert isinstance(Reranker.load(tmp_path / name), LLMReranker)

    code = {"type": "vllm", "model": "someone/model-with-code", "trust_remote_code": True}  # loads on first use
    LLMReranker(load_backend(code)).save(tmp_path / "code")
    with pytest.raises(UntrustedRerankerError, match="someone/model-with-code.*trust_remote_code.*--trust-reranker"):
        Reranker.load(tmp_path / "code")
    assert Reranker.load(tmp_path / "code", allow_remote=True).backend.config.trust_remote_code

    # in a cascade: the inline teacher, and the student's folder
    local = LLMReranker(load_backend({**REMOTE, "api_key_env": None}))
    CascadeReranker(local, loaded, top=2).save(tmp_path / "teacher-remote")
    CascadeReranker(loaded, local, top=2).save(tmp_path / "student-remote")
    for name in ("teacher-remote", "student-remote"):
        with pytest.raises(UntrustedRerankerError, match="DOCRERANK_TEST_KEY"):
            Reranker.load(tmp_path / name)
        assert isinstance(Reranker.load(tmp_path / name, allow_remote=True), CascadeReranker)


def test_a_hand_edited_reranker_json_is_checked_and_its_errors_name_the_file(tmp_path):
    folder = tmp_path / "edited"
    folder.mkdir()
    (folder / "reranker.json").write_text(
        json.dumps({"kind": "llm", "backend": {**REMOTE, "base_url": "https://x.example/v1"}})
    )
    with pytest.raises(UntrustedRerankerError, match="https://x.example/v1"):
        Reranker.load(folder)
    (folder / "reranker.json").write_text(json.dumps({"kind": "llm", "backend": REMOTE, "unknown_setting": 1}))
    with pytest.raises(DocrerankError, match="reranker.json: bad llm reranker settings"):
        Reranker.load(folder, allow_remote=True)
    (folder / "reranker.json").write_text("{not json")
    with pytest.raises(DocrerankError, match="not readable JSON"):
        Reranker.load(folder)


def test_every_list_of_reranker_kinds_is_read_from_the_registry(tmp_path):
    assert list(RERANKER_KINDS) == ["cross-encoder", "bi-encoder", "fusion", "true-false", "llm", "cascade"]
    assert all(name == kind.cls.kind for name, kind in RERANKER_KINDS.items())
    (tmp_path / "reranker.json").write_text(json.dumps({"kind": "nope"}))
    with pytest.raises(
        DocrerankError, match="unknown reranker kind .nope.: one of cross-encoder, bi-encoder, fusion, true-f"
    ):
        Reranker.load(tmp_path)
    (tmp_path / "reranker.json").write_text(json.dumps({"kind": ["cascade"]}))  # not a name: unknown, not a crash
    with pytest.raises(DocrerankError, match="unknown reranker kind"):
        Reranker.load(tmp_path)
    assert RERANKERS == ("cross-encoder", "bi-encoder", "llm", "cascade", "saved")  # true-false: --reranker saved
    with pytest.raises(DocrerankError, match="use one of cross-encoder, bi-encoder, llm, cascade, saved"):
        make_reranker("true-false", None, None, "verifier")
    assert TRAINABLE == ("cross-encoder", "bi-encoder", "fusion", "true-false")
    untrainable = invoke_cli("train", "--data", tmp_path, "--out", tmp_path / "out", "--reranker", "llm").exception
    assert "train one of cross-encoder, bi-encoder, fusion, true-false" in str(untrainable)


@pytest.mark.slow
def test_rerank_command_refuses_an_untrusted_saved_reranker_without_the_flag(
    store_with_an_empty_page, tmp_path, monkeypatch
):
    store = store_with_an_empty_page
    queries, first, blank = _first_stage(store, tmp_path)
    LLMReranker(load_backend(REMOTE)).save(tmp_path / "remote")
    args = ["rerank", "--pages", store.root, "--queries", queries, "--trec", first, "--out", tmp_path / "out.trec"]
    args += ["--reranker", "saved", "--model", tmp_path / "remote"]
    refused = run_cli(*args)
    assert refused.exit_code != 0 and not (tmp_path / "out.trec").exists()
    assert "--trust-reranker" in refused.stderr and "DOCRERANK_TEST_KEY" in refused.stderr
    assert "Traceback" not in refused.stderr
    # with the flag it loads and runs; the unreachable server fails each pair, which ranks last and is named
    monkeypatch.setenv("DOCRERANK_TEST_KEY", "test-key-not-secret")
    trusted = run_cli(*args, "--trust-reranker")
    assert trusted.exit_code == 1, trusted.stderr[-2000:]
    assert trusted.stderr.count("ranked last") == 3 and "has no text" in trusted.stderr
    reranked, _ = read_trec(tmp_path / "out.trec")
    assert all(s == float("-inf") for _, s in reranked["q1"])
