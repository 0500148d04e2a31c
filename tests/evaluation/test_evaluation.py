"""Evaluation: the BEIR and page-store loaders on fixtures in their real formats, metrics against
ir-measures on inline TREC data, the significance test, and `docrerank evaluate` end to end."""

from __future__ import annotations

import json
import shutil
import sqlite3
from collections.abc import Sequence

import ir_measures
import pytest

from docrerank.errors import DocrerankError
from docrerank.evaluation import (
    MEASURES,
    CachedReranker,
    ScoreCache,
    TextCorpus,
    candidate_pairs,
    evaluate,
    load_beir,
    load_realmm,
    load_store,
    load_vidore,
    paired_p_value,
    per_query,
    score_pairs,
)
from docrerank.pages.content import PageLike
from docrerank.rerankers import CascadeReranker
from docrerank.rerankers.base import Reranker
from docrerank.retrieval import BM25Retriever
from tests.helpers import ROOT, invoke_cli

BEIR = ROOT / "tests" / "data" / "beir-mini"


def test_beir_folder_loads_as_it_is():
    benchmark = load_beir(BEIR)
    assert isinstance(benchmark.corpus, TextCorpus) and len(benchmark.corpus) == 10
    assert benchmark.corpus["d1"].text.startswith("strucchange: F statistics\n\nThe function Fstats")
    assert benchmark.corpus["d10"].text.startswith("Plot of the recursive CUSUM")  # no title, no blank line
    assert len(benchmark.queries) == 9 and benchmark.qrels["q2"] == {"d2": 2, "d10": 1}
    assert benchmark.qrels["q1"] == {"d1": 1, "d2": 0}
    assert benchmark.judged_queries == [f"q{i}" for i in range(1, 9)]  # q9 has no judgement
    assert any("1 queries have no relevant page" in note for note in benchmark.notes)


def test_bad_beir_files_are_named(tmp_path):
    folder = tmp_path / "beir"
    shutil.copytree(BEIR, folder)
    (folder / "qrels" / "test.tsv").write_text("q1\td1\t1\n")
    with pytest.raises(DocrerankError, match=r"test.tsv:1: BEIR qrels start with the header"):
        load_beir(folder)
    with pytest.raises(DocrerankError, match=r"no qrels for the split 'dev'"):
        load_beir(folder, split="dev")
    shutil.copy2(BEIR / "qrels" / "test.tsv", folder / "qrels" / "test.tsv")
    (folder / "queries.jsonl").write_text('{"_id": "q1", "text": "x"}\n{"_id": "q2"\n')
    benchmark = load_beir(folder)  # a bad line is named and left out; the rest loads
    assert [str(e) for e in benchmark.skipped] == [f"{folder / 'queries.jsonl'}:2: not a JSON line "
                                                   "(Expecting ',' delimiter). Fix: fix or remove it"]  # fmt: skip
    assert list(benchmark.queries) == ["q1"]


def test_a_page_store_with_queries_and_trec_qrels(vignette_store, tmp_path):
    pages = list(vignette_store)[:3]
    queries = tmp_path / "queries.jsonl"
    queries.write_text("".join(json.dumps({"query_id": f"q{i}", "query": f"question {i}"}) + "\n" for i in range(3)))
    qrels = tmp_path / "qrels.txt"
    qrels.write_text(f"q0 0 {pages[0].page_id} 1\nq1 0 {pages[1].page_id} 2\nq2 0 not-a-page 1\n")
    benchmark = load_store(vignette_store, queries, qrels)
    assert benchmark.judged_queries == ["q0", "q1"]
    assert benchmark.page(pages[1].page_id).text == pages[1].text
    assert any("1 judgements name pages the corpus does not hold" in n for n in benchmark.notes)
    qrels.write_text(f"q0 0 only-three-columns\nq1 0 {pages[1].page_id} 2\n")
    benchmark = load_store(vignette_store, queries, qrels)
    assert [e.item for e in benchmark.skipped] == [f"{qrels}:1"] and "want four columns" in benchmark.skipped[0].reason
    assert benchmark.judged_queries == ["q1"]
    qrels.write_text("q0 0 only-three-columns\n")  # nothing usable left: an error that names the bad line
    with pytest.raises(DocrerankError, match=r"1 bad lines left out, the first: .*qrels.txt:1: want four columns"):
        load_store(vignette_store, queries, qrels)


RUN = {  # inline TREC data: distinct scores, so ir-measures and docrerank see the same order
    "q1": [("a", 0.9), ("b", 0.8), ("c", 0.7), ("d", 0.6), ("e", 0.5), ("f", 0.4)],
    "q2": [("x", 3.0), ("y", 2.0), ("z", 1.0)],
    "q3": [("m", 1.0), ("n", 0.5)],
}
QRELS = {"q1": {"c": 1, "f": 2, "a": 0}, "q2": {"x": 1, "z": 3}, "q3": {"n": 1}, "q4": {"k": 1}}


def test_metrics_are_ir_measures_values_with_unanswered_queries_as_zero():
    values = per_query(RUN, QRELS, ["q1", "q2", "q3", "q4"])
    qrels = [ir_measures.Qrel(q, d, g) for q, judged in QRELS.items() for d, g in judged.items()]
    scored = [ir_measures.ScoredDoc(q, d, s) for q, ranking in RUN.items() for d, s in ranking]
    for measure in MEASURES:
        reference = ir_measures.calc_aggregate([ir_measures.parse_measure(measure)], qrels, scored)
        expected = next(iter(reference.values()))
        assert sum(values[measure].values()) / 4 == pytest.approx(expected), measure
        assert values[measure]["q4"] == 0.0  # no ranking at all: counted, as 0 (as trec_eval's mean does)
    assert values["RR@10"] == {"q1": pytest.approx(1 / 3), "q2": 1.0, "q3": 0.5, "q4": 0.0}
    assert values["R@1"]["q2"] == 0.5


def test_the_paired_test_separates_a_real_difference_from_none():
    better = {f"q{i}": 0.8 + (i % 3) * 0.05 for i in range(30)}
    worse = {f"q{i}": 0.3 + (i % 5) * 0.05 for i in range(30)}
    assert paired_p_value(better, worse) < 0.01
    assert paired_p_value(better, better) == 1.0
    noisy = {q: v + (0.05 if i % 2 else -0.05) for i, (q, v) in enumerate(better.items())}
    assert paired_p_value(better, noisy) > 0.5


class KeepOrder(Reranker):
    """Gives every page the same score: a reranker that keeps the first stage's order (ties are stable)."""

    kind, uses = "keep-order", frozenset({"text"})

    def score(self, pairs: Sequence[tuple[str, PageLike]]) -> list[float]:
        return [0.5] * len(pairs)


def test_a_reranker_that_keeps_the_order_reproduces_the_first_stage_exactly():
    benchmark = load_beir(BEIR)
    queries = benchmark.judged_queries
    rankings = BM25Retriever(benchmark.corpus).search([benchmark.queries[q] for q in queries], 5)
    run = dict(zip(queries, rankings, strict=True))
    result = evaluate(benchmark, run, {"keep": (KeepOrder(), "v1")}, k=5)
    first, kept = result.systems
    assert kept.run == {q: [(p, 0.5) for p, _ in ranking] for q, ranking in first.run.items()}
    assert kept.values == first.values
    assert result.comparisons[0].delta == 0.0 and result.comparisons[0].p_value == 1.0


class ReverseEachSet(Reranker):
    """Scores a candidate by its position in its set, last first: meaningful only over a query's whole set."""

    kind, uses, pairwise = "reverse", frozenset({"text"}), False

    def score(self, pairs: Sequence[tuple[str, PageLike]]) -> list[float]:
        return [float(i) for i in range(len(pairs))]

    def score_sets(self, sets):
        return [self.score(candidates) for candidates in sets]


def test_a_reranker_whose_scores_depend_on_the_set_sees_each_querys_candidates_together(tmp_path):
    benchmark = load_beir(BEIR)
    queries = benchmark.judged_queries
    rankings = BM25Retriever(benchmark.corpus).search([benchmark.queries[q] for q in queries], 5)
    run = dict(zip(queries, rankings, strict=True))
    result = evaluate(benchmark, run, {"reverse": (ReverseEachSet(), "v1")}, 5, cache=ScoreCache(tmp_path / "s.db"))
    first, reversed_ = result.systems
    assert {q: [p for p, _ in r] for q, r in reversed_.run.items()} == {
        q: [p for p, _ in r][::-1] for q, r in first.run.items()
    }
    assert ScoreCache(tmp_path / "s.db").scores("reverse:v1") == {}  # never cached: they depend on the set


class FailsOnPage(Reranker):
    """Scores by query length and records each call's pairs; raises once it is shown ``fail_on``."""

    kind, uses = "records-calls", frozenset({"text"})

    def __init__(self, fail_on: str | None = None):
        self.calls: list[list[tuple[str, str]]] = []
        self.fail_on = fail_on

    def score(self, pairs: Sequence[tuple[str, PageLike]]) -> list[float]:
        self.calls.append([(query, page.page_id) for query, page in pairs])
        if any(page.page_id == self.fail_on for _, page in pairs):
            raise RuntimeError("interrupted")
        return [float(len(query)) for query, _ in pairs]


def test_pairs_are_scored_grouped_by_page_cached_chunk_by_chunk_and_resumed(tmp_path):
    """A chat model evaluates a page's prompt prefix once for all its queries only when a page's pairs
    come together: the runner orders them by page over all queries; an interrupted run keeps its chunks."""
    benchmark = load_beir(BEIR)
    queries = benchmark.judged_queries
    rankings = BM25Retriever(benchmark.corpus).search([benchmark.queries[q] for q in queries], 5)
    pairs = candidate_pairs(benchmark, dict(zip(queries, rankings, strict=True)))
    pages = sorted({page_id for _, page_id in pairs})
    assert len(pairs) > len(pages) > 2  # pages shared between queries
    cache = ScoreCache(tmp_path / "scores.sqlite")
    interrupted = FailsOnPage(fail_on=pages[-1])
    with pytest.raises(RuntimeError):
        score_pairs(interrupted, "s", pairs, benchmark.page, cache, chunk=3)
    scored = [pair for call in interrupted.calls for pair in call]
    assert [page_id for _, page_id in scored] == sorted(page_id for _, page_id in scored)  # by page
    kept = cache.scores("s")
    assert set(kept) == {pair for call in interrupted.calls[:-1] for pair in call} and kept
    resumed = FailsOnPage()
    scores = score_pairs(resumed, "s", pairs, benchmark.page, ScoreCache(tmp_path / "scores.sqlite"), chunk=3)
    assert {pair for call in resumed.calls for pair in call} == set(pairs) - set(kept)
    assert scores == {pair: float(len(pair[0])) for pair in pairs}


class RecordsByText(FailsOnPage):
    """Records each call's pairs; scores differ by page and query (the teacher's order is not the student's)."""

    def __init__(self, salt: int):
        super().__init__()
        self.salt = salt

    def score(self, pairs: Sequence[tuple[str, PageLike]]) -> list[float]:
        super().score(pairs)
        return [float((len(page.text) * self.salt + len(query)) % 17) for query, page in pairs]


def test_a_cascade_of_cached_rerankers_scores_only_what_their_rows_did_not_and_ranks_the_same(tmp_path):
    benchmark = load_beir(BEIR)
    queries = benchmark.judged_queries
    rankings = BM25Retriever(benchmark.corpus).search([benchmark.queries[q] for q in queries], 5)
    run = dict(zip(queries, rankings, strict=True))
    cache = ScoreCache(tmp_path / "scores.sqlite")
    score_pairs(RecordsByText(3), "student", candidate_pairs(benchmark, run), benchmark.page, cache)  # its row
    student, teacher = RecordsByText(3), RecordsByText(5)
    cached = CascadeReranker(CachedReranker(student, "student", cache), CachedReranker(teacher, "teacher", cache), 2)
    plain = CascadeReranker(RecordsByText(3), RecordsByText(5), 2)
    result = evaluate(benchmark, run, {"cached": (cached, ""), "plain": (plain, "")}, 5)
    assert result.systems[1].run == result.systems[2].run != result.systems[0].run
    assert student.calls == [[]]  # every student pair came from the cache
    judged = [pair for call in teacher.calls for pair in call]
    assert len(judged) == sum(min(2, len(r)) for r in rankings) and set(cache.scores("teacher")) == set(judged)
    teacher.calls.clear()
    evaluate(benchmark, run, {"cached": (cached, "")}, 5)
    assert teacher.calls == [[]]  # the second time the teacher's heads come from the cache too


@pytest.mark.slow
def test_evaluate_on_a_beir_folder_prints_the_table_and_caches_scores(tmp_path):
    out = tmp_path / "eval"  # the command in this process: what it writes is under test, not its process
    result = invoke_cli("evaluate", "--benchmark", BEIR, "--first-stage", "bm25", "--k", "5", "--out", out)
    assert result.exit_code == 0, (result.stdout[-2000:], result.exception)
    assert "beir-mini: 8 queries" in result.stdout and "NDCG@5" in result.stdout
    summary = json.loads((out / "summary.json").read_text())
    bm25 = summary["systems"]["bm25"]
    assert bm25["nDCG@5"] > 0.5  # the hand-written queries share words with their pages

    rerun = invoke_cli(
        "evaluate", "--benchmark", BEIR, "--first-stage", "bm25", "--k", "5", "--out", out,
        "--rerankers", "cross-encoder",
    )  # fmt: skip
    assert rerun.exit_code == 0, (rerun.stdout[-2000:], rerun.exception)
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["systems"]) == {"bm25", "cross-encoder"}
    assert summary["systems"]["bm25"] == bm25
    comparison = summary["comparisons"][0]
    assert comparison["system"] == "cross-encoder" and comparison["baseline"] == "bm25"
    table = (out / "table.md").read_text()
    assert "| bm25 |" in table and "| cross-encoder |" in table and "Δ NDCG@5 vs bm25" in table
    rows = [json.loads(line) for line in (out / "per_query.jsonl").read_text().splitlines()]
    assert len(rows) == 16 and set(rows[0]) == {"system", "query_id", *MEASURES}
    with sqlite3.connect(out / "scores.sqlite") as db:
        cached = db.execute("SELECT COUNT(*) FROM scores").fetchone()[0]
    candidates = (out / "runs" / "bm25.trec").read_text().count("\n")  # BM25 returns only pages sharing a term
    assert cached == candidates and 8 <= candidates <= 8 * 5
    # the same reranker again: everything comes from the cache, nothing is scored twice
    again = invoke_cli(
        "evaluate", "--benchmark", BEIR, "--first-stage", "bm25", "--k", "5", "--out", out,
        "--rerankers", "cross-encoder",
    )  # fmt: skip
    assert again.exit_code == 0
    assert json.loads((out / "summary.json").read_text())["systems"] == summary["systems"]
    with sqlite3.connect(out / "scores.sqlite") as db:
        assert db.execute("SELECT COUNT(*) FROM scores").fetchone()[0] == cached


def _page_images(store, count: int = 3):
    from PIL import Image

    return [Image.open(store.image_path(page)).convert("RGB") for page in list(store)[:count]]


@pytest.mark.slow
def test_a_vidore_folder_of_parquet_tables_becomes_a_store_with_ocr_text(vignette_store, tmp_path):
    """The ViDoRe layout (corpus/, queries/, qrels/ with test-*.parquet, written by `datasets` as the Hub
    holds them); the page images are ingested (Tesseract reads their text) into a cached store."""
    import datasets

    folder = tmp_path / "vidore-mini"
    images = _page_images(vignette_store)
    corpus = datasets.Dataset.from_dict({"corpus-id": [10, 11, 12], "image": images, "doc-id": ["a", "a", "b"]})
    corpus.cast_column("image", datasets.Image()).to_parquet(folder / "corpus" / "test-00000-of-00001.parquet")
    queries = datasets.Dataset.from_dict({"query-id": [1, 2], "query": ["structural change tests", "F statistics"]})
    queries.to_parquet(folder / "queries" / "test-00000-of-00001.parquet")
    qrels = datasets.Dataset.from_dict({"query-id": [1, 2, 2], "corpus-id": [10, 12, 99], "score": [1, 2, 1]})
    qrels.to_parquet(folder / "qrels" / "test-00000-of-00001.parquet")

    benchmark = load_vidore(str(folder))
    assert len(benchmark.corpus) == 3 and benchmark.queries == {"1": "structural change tests", "2": "F statistics"}
    page_of = {str(cid): page.page_id for cid, page in zip((10, 11, 12), benchmark.corpus, strict=False)}
    assert set(benchmark.qrels) == {"1", "2"} and all(len(j) == 1 for j in benchmark.qrels.values())
    assert any("judgements name pages the corpus does not hold" in n for n in benchmark.notes)  # corpus-id 99
    judged = benchmark.page(next(iter(benchmark.qrels["1"])))
    assert judged.text_source == "ocr" and "change" in judged.text.lower()  # the first vignette page, read by OCR
    assert benchmark.source["format"] == "vidore" and page_of
    again = load_vidore(str(folder))  # the store is reused: nothing is ingested twice
    assert again.corpus.root == benchmark.corpus.root and again.qrels == benchmark.qrels


@pytest.mark.slow
def test_a_real_mm_rag_table_asks_the_chosen_rephrasing(vignette_store, tmp_path):
    import datasets

    from docrerank.pages import IngestSettings

    images = _page_images(vignette_store)
    rows = {
        "id": [0, 1, 2, 3],
        "image": [images[0], images[1], images[1], images[2]],
        "image_filename": ["p1.png", "p2.png", "p2.png", "p3.png"],
        "query": ["What is tested?", None, "Which statistic?", "Which plot?"],
        "rephrase_level_1": ["What gets tested?", None, "Which test statistic?", None],
        "rephrase_level_2": ["What is examined?", None, "What figure is computed?", "What chart?"],
        "rephrase_level_3": ["Examined how?", None, "Computed what?", "Drawn what?"],
        "answer": ["change", None, "F", "boundary"],
    }
    table = tmp_path / "realmm.parquet"
    datasets.Dataset.from_dict(rows).cast_column("image", datasets.Image()).to_parquet(table)
    quick = IngestSettings(ocr="never")  # the text machinery is the ViDoRe test's; here the queries matter
    original = load_realmm(str(table), level=0, settings=quick)
    assert len(original.corpus) == 3 and original.queries == {"0": "What is tested?", "2": "Which statistic?",
                                                              "3": "Which plot?"}  # fmt: skip
    assert len({next(iter(j)) for j in original.qrels.values()}) == 3  # each query's own page, p2 stored once
    level1 = load_realmm(str(table), level=1, settings=quick)
    assert level1.queries == {"0": "What gets tested?", "2": "Which test statistic?"}
    assert level1.qrels["2"] == original.qrels["2"] and level1.name.endswith("-rephrase1")
    assert any("1 queries have no level-1 rephrasing" in note for note in level1.notes)
    with pytest.raises(DocrerankError, match="rephrase level 4"):
        load_realmm(str(table), level=4)


@pytest.mark.slow
def test_a_vlm_reranker_is_shown_the_store_pages_images(vignette_store, tmp_path):
    from docrerank.rerankers import TrueFalseReranker
    from docrerank.testing.tiny_models import tiny_qwen2vl_path

    pages = list(vignette_store)[:3]
    queries = tmp_path / "queries.jsonl"
    queries.write_text(json.dumps({"query_id": "q0", "query": "Which tests are implemented?"}) + "\n")
    qrels = tmp_path / "qrels.txt"
    qrels.write_text(f"q0 0 {pages[1].page_id} 1\n")
    benchmark = load_store(vignette_store, queries, qrels)
    run = {"q0": [(page.page_id, 1.0 - i / 10) for i, page in enumerate(pages)]}
    vlm = TrueFalseReranker(model=str(tiny_qwen2vl_path()))  # it refuses a page without its image
    result = evaluate(benchmark, run, {"vlm": (vlm, "tiny")}, k=3)
    assert sorted(p for p, _ in result.systems[1].run["q0"]) == sorted(p.page_id for p in pages)
