"""BM25 over the committed vignette pages: ranking, the saved index and its fingerprint, the CLI."""

from __future__ import annotations

import json

import pytest

from docrerank.retrieval import BM25Retriever, read_trec
from tests.helpers import invoke_cli

# Page 13 of the strucchange vignette (the third page) reports the monitoring break at observation #72.
QUERY = "At which observation is the structural break detected when monitoring with the mefp object?"


def test_the_page_that_answers_ranks_first_and_stemming_matches_word_forms(vignette_store):
    third = vignette_store.page_ids[2]
    rankings = BM25Retriever(vignette_store).search([QUERY, "monitors detecting breaks", "zebra giraffe"], k=3)
    assert rankings[0][0][0] == third
    assert [score for _, score in rankings[0]] == sorted((s for _, s in rankings[0]), reverse=True)
    assert rankings[1] and rankings[1][0][0] == third  # "monitors"/"detecting" meet "monitoring"/"detected"
    assert rankings[2] == []  # no shared term: nothing returned


def test_the_index_is_saved_beside_the_store_and_reused_until_its_settings_change(vignette_store):
    first = BM25Retriever(vignette_store)
    first.search([QUERY], k=2)
    folder = first.index_dir
    assert folder.parent == vignette_store.root / "derived" and (folder / "page_ids.json").exists()
    stamp = (folder / "page_ids.json").stat().st_mtime_ns
    again = BM25Retriever(vignette_store)
    assert again.search([QUERY], k=2) == first.search([QUERY], k=2)
    assert (folder / "page_ids.json").stat().st_mtime_ns == stamp  # loaded, not rebuilt
    assert BM25Retriever(vignette_store, k1=1.2).index_dir != folder


def test_retrieve_writes_a_trec_run_and_names_bad_queries(vignette_store, tmp_path):
    third = vignette_store.page_ids[2]
    queries = tmp_path / "queries.jsonl"
    lines = [
        {"query_id": "good", "query": QUERY, "page_id": third},
        {"query_id": "empty", "query": "  "},
        {"query_id": "unknown", "query": "structural change", "page_id": "f" * 32},
        {"query_id": "free", "query": "OLS-based CUSUM test"},
    ]
    queries.write_text("\n".join(json.dumps(line) for line in lines) + "\n{broken\n")
    out = tmp_path / "run.trec"
    args = ("--pages", vignette_store.root, "--queries", queries, "--out", out, "--k", "2", "--retriever", "bm25")
    result = invoke_cli("retrieve", *args)
    assert result.exit_code == 1  # some queries were unusable; the others were retrieved
    run, errors = read_trec(out)
    assert errors == [] and set(run) == {"good", "free"}
    assert run["good"][0][0] == third and len(run["good"]) <= 2
    assert "recall@2 1.000" in result.stdout


@pytest.mark.slow
def test_pages_without_text_are_named_with_the_ocr_fix(tmp_path):
    from docrerank.pages import IngestSettings, ingest
    from tests.helpers import PDF3, SCAN, run_cli

    store = tmp_path / "store"
    ingest([PDF3, SCAN], store, IngestSettings(ocr="never"))
    queries = tmp_path / "queries.jsonl"
    queries.write_text(json.dumps({"query": QUERY}) + "\n")
    result = run_cli(
        "retrieve", "--pages", store, "--queries", queries, "--out", tmp_path / "run.trec", "--retriever", "bm25"
    )
    assert result.exit_code == 0, result.stderr
    assert "1 page(s)" in result.stderr and "have no text" in result.stderr and "--ocr auto" in result.stderr
    run, _ = read_trec(tmp_path / "run.trec")
    assert len(run["q1"]) == 3  # the three text pages; the scan cannot be found by text
