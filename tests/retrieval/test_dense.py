"""Dense retrieval (the bundled MiniLM; EmbeddingGemma) and rank fusion, on the sample documents' pages."""

from __future__ import annotations

import json

import numpy as np
import pytest

from docrerank.retrieval import BM25Retriever, DenseRetriever, HybridRetriever, fuse, make_retriever
from docrerank.retrieval.dense import chunk_words, exact_search
from tests.helpers import bundled_encoder


def _queries(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_chunks_overlap_and_cover_every_word():
    words = [f"w{i}" for i in range(10)]
    chunks = chunk_words(" ".join(words), size=4, stride=3)
    assert chunks == ["w0 w1 w2 w3", "w3 w4 w5 w6", "w6 w7 w8 w9"]
    assert chunk_words("a b", size=4, stride=3) == ["a b"]
    assert chunk_words(" ".join(words), size=0, stride=3) == [" ".join(words)]  # whole page


def test_exact_search_is_brute_force_with_the_best_chunk_per_page():
    rng = np.random.default_rng(0)
    rows = rng.normal(size=(50, 8)).astype(np.float32)
    row_pages = np.repeat(np.arange(10), 5)  # 10 pages of 5 chunks
    queries = rng.normal(size=(7, 8)).astype(np.float32)
    ids, scores = exact_search(queries, rows, 4, row_pages)
    brute = (queries @ rows.T).reshape(7, 10, 5).max(axis=2)
    for q in range(7):
        order = np.argsort(-brute[q])[:4]
        assert ids[q].tolist() == order.tolist()
        assert np.allclose(scores[q], brute[q][order])
    ids, _ = exact_search(queries, rows, 100)  # k above the rows: every row, ranked
    assert sorted(ids[0].tolist()) == list(range(50))


@pytest.mark.slow
def test_dense_finds_the_pages_saves_its_index_and_scores_pairs_as_search_does(sample_pages, mining_queries):
    rows = _queries(mining_queries)
    retriever = DenseRetriever(sample_pages)
    rankings = retriever.search([r["query"] for r in rows], k=10)
    hits = sum(r["page_id"] in [p for p, _ in ranking] for r, ranking in zip(rows, rankings, strict=True))
    assert hits >= 8  # 10 queries: MiniLM finds most of their pages in its top 10 of 46
    assert all([s for _, s in ranking] == sorted((s for _, s in ranking), reverse=True) for ranking in rankings)
    folder = retriever.index_dir
    assert {p.name for p in folder.iterdir()} == {"embeddings.npy", "chunk_pages.npy", "page_ids.json"}
    stamp = (folder / "embeddings.npy").stat().st_mtime_ns
    again = DenseRetriever(sample_pages)
    assert again.search([rows[0]["query"]], k=5) == retriever.search([rows[0]["query"]], k=5)
    assert (folder / "embeddings.npy").stat().st_mtime_ns == stamp  # loaded, not rebuilt
    assert DenseRetriever(sample_pages, chunk_words=64, stride=48).index_dir != folder
    top = [ranking[0] for ranking in rankings]
    scores = retriever.score([r["query"] for r in rows], [page for page, _ in top])
    assert scores == pytest.approx([score for _, score in top], abs=1e-5)
    fresh = DenseRetriever(sample_pages).score([r["query"] for r in rows], [page for page, _ in top])  # encodes them
    assert fresh == pytest.approx(scores, abs=1e-5)


def test_fusion_adds_reciprocal_ranks():
    fused = fuse([[("a", 9.0), ("b", 5.0)], [("b", 0.9), ("c", 0.8)]], rrf_k=60)
    assert [page for page, _ in fused] == ["b", "a", "c"]
    assert fused[0][1] == pytest.approx(1 / 62 + 1 / 61)


@pytest.mark.slow  # builds the MiniLM index of the 46 sample pages (~15 s)
def test_hybrid_of_bm25_and_dense(sample_pages, mining_queries):
    rows = _queries(mining_queries)
    hybrid = make_retriever("hybrid", sample_pages)
    assert isinstance(hybrid, HybridRetriever) and [p.name for p in hybrid.parts] == ["bm25", "dense"]
    texts = [r["query"] for r in rows]
    fused = hybrid.search(texts, k=5)
    bm25, dense = BM25Retriever(sample_pages).search(texts, 100), DenseRetriever(sample_pages).search(texts, 100)
    for ranking, a, b in zip(fused, bm25, dense, strict=True):
        assert ranking == fuse([a, b])[:5]
    assert hybrid.score(texts, [r[0][0] for r in fused]) == [r[0][1] for r in fused]
    assert len(hybrid.indexes()) == 2
    with pytest.raises(Exception, match="two different"):
        make_retriever("bm25+bm25", sample_pages)


def test_a_spec_names_the_dense_model_and_each_model_has_its_own_index(vignette_store):
    hybrid = make_retriever("bm25+dense:embeddinggemma", vignette_store)
    gemma = hybrid.parts[1]
    assert [p.name for p in hybrid.parts] == ["bm25", "dense"]
    assert (gemma.model, gemma.chunk_words, gemma.stride) == ("embeddinggemma-300m", 256, 192)  # its own chunks
    minilm = make_retriever("dense", vignette_store)
    assert (minilm.model, minilm.chunk_words, minilm.stride) == ("all-MiniLM-L6-v2", 128, 96)
    assert gemma.index_dir != minilm.index_dir  # nothing is loaded or built to know that
    assert make_retriever("dense", vignette_store, model="EmbeddingGemma").index_dir == gemma.index_dir  # aliases
    assert make_retriever("bm25+dense", vignette_store, model="mpnet").parts[1].model == "all-mpnet-base-v2"
    with pytest.raises(Exception, match="bm25 has no model"):
        make_retriever("bm25:mpnet", vignette_store)


# reworded questions on the vignette's three pages (page index in the PDF), not copied from them
VIGNETTE_QUESTIONS = [
    ("Which R software reviews tests for breaks in linear regression relationships?", 0),
    ("error correction model of American consumer spending and income", 1),
    ("In which month did the online monitoring report that the parameters had shifted?", 2),
]


@pytest.mark.slow
def test_embeddinggemma_prompts_queries_and_pages_apart_and_finds_each_page(vignette_store):
    from docrerank.embeddings import load_embedder

    bundled_encoder("embeddinggemma")
    retriever = DenseRetriever(vignette_store, model="embeddinggemma")
    encoder = load_embedder("embeddinggemma")
    text = "tests for structural change in linear regression models"
    query, document = retriever._encode([text], query=True)[0], retriever._encode([text], query=False)[0]
    for prompt, vector in ((encoder.prompts["query"], query), (encoder.prompts["document"], document)):
        assert np.allclose(vector, encoder.encode([prompt + text], normalize_embeddings=True)[0], atol=1e-4)
    assert float(query @ document) < 0.99  # the two prompts differ: "task: search result | query: ", "title: none..."
    pages = {page.page_index: page.page_id for page in vignette_store}
    rankings = retriever.search([q for q, _ in VIGNETTE_QUESTIONS], k=3)
    assert [ranking[0][0] for ranking in rankings] == [pages[index] for _, index in VIGNETTE_QUESTIONS]
    fused = make_retriever("bm25+dense:embeddinggemma", vignette_store).search([q for q, _ in VIGNETTE_QUESTIONS], 3)
    assert [ranking[0][0] for ranking in fused] == [pages[index] for _, index in VIGNETTE_QUESTIONS]
