"""The cascade: its ranking contract (the teacher's order on the student's top N, the student's order after,
ties stable), candidate sets, saving and loading with an LLM teacher, the rerank command, and the default chain
of `rerank` and `serve`."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Sequence

import pytest
import yaml

from docrerank.errors import DocrerankError
from docrerank.pages.content import PageLike
from docrerank.rerankers import CascadeReranker, CrossEncoderReranker, LLMReranker, Reranker, default_chain
from docrerank.rerankers.base import UNSCORED, PairScore, page_text
from docrerank.retrieval import read_trec, write_trec
from tests.helpers import bundled_encoder, docrerank_command, free_port, health_answer, run_cli, tiny_llm

TINY = tiny_llm(2048)


class TableReranker(Reranker):
    """A toy reranker: each page text's score from a table (per query when keyed by (query, text)), and the
    pairs it was asked about, in order."""

    kind = "table"
    uses = frozenset({"text"})

    def __init__(self, table: dict):
        self.table, self.seen = table, []

    def score(self, pairs: Sequence[tuple[str, PageLike]]) -> list[float]:
        keys = [(query, page_text(page)) for query, page in pairs]
        self.seen += keys
        return [float(self.table.get(key, self.table.get(key[1], 0.0))) for key in keys]


def _order(reranker: Reranker, query: str, pages: list[str]) -> list[str]:
    return [pages[int(i)] for i, _ in reranker.rank(query, pages)]


def test_the_teacher_orders_the_students_top_n_and_the_student_the_rest():
    pages = ["a", "b", "c", "d", "e", "f"]
    student = TableReranker({"a": 0.1, "b": 0.9, "c": 0.8, "d": 0.7, "e": 0.2, "f": 0.3})  # b c d f e a
    teacher = TableReranker({"b": 0.2, "c": 0.5, "d": 0.9, "a": 1.0, "e": 1.0, "f": 1.0})  # knows better about a, e, f
    cascade = CascadeReranker(student, teacher, top=3)
    assert _order(cascade, "q", pages) == ["d", "c", "b", "f", "e", "a"]
    assert sorted(teacher.seen) == [("q", "b"), ("q", "c"), ("q", "d")]  # the teacher saw the student's top 3 only
    scores = cascade.score([("q", p) for p in pages])
    assert sorted(scores, reverse=True) == [6.0, 5.0, 4.0, 3.0, 2.0, 1.0]  # n - position: strictly monotone
    # top N beyond the candidates: the teacher orders them all; one candidate: it is first
    assert _order(CascadeReranker(student, teacher, top=10), "q", pages) == ["f", "e", "a", "d", "c", "b"]
    assert CascadeReranker(student, teacher, top=2).score([("q", "a")]) == [1.0]


def test_ties_are_stable_teacher_ties_keep_the_students_order_and_student_ties_the_input_order():
    pages = ["a", "b", "c", "d", "e"]
    student = TableReranker({"a": 0.5, "b": 0.9, "c": 0.5, "d": 0.9, "e": 0.5})  # b d (tie: input order) a c e
    teacher = TableReranker({})  # every page 0.0: a tie throughout
    assert _order(CascadeReranker(student, teacher, top=3), "q", pages) == ["b", "d", "a", "c", "e"]
    assert _order(CascadeReranker(student, teacher, top=3), "q", list(reversed(pages))) == ["d", "b", "e", "c", "a"]
    # a pair the teacher could not score (-inf) falls to the end of the head, nan too
    failing = TableReranker({"b": float("-inf"), "d": float("nan"), "a": 0.3})
    assert _order(CascadeReranker(student, failing, top=3), "q", pages) == ["a", "b", "d", "c", "e"]


def test_a_pair_the_student_cannot_score_ranks_last_with_why_and_never_reaches_the_teacher():
    pages = ["a", "b", "c", "d"]
    student = TableReranker({"a": 0.9, "b": float("-inf"), "c": 0.5, "d": 0.7})  # b: no score
    teacher = TableReranker({"b": 1.0, "c": 0.5})  # it would put b first
    cascade = CascadeReranker(student, teacher, top=4)
    results = cascade.score_results([("q", p) for p in pages])
    assert [r.ok for r in results] == [True, False, True, True] and "no score" in results[1].error
    assert [r.score for r in results] == [2.0, UNSCORED, 3.0, 1.0]  # c a d (the teacher's order), then b
    assert ("q", "b") not in teacher.seen
    assert _order(cascade, "q", pages) == ["c", "a", "d", "b"]
    assert cascade.score_set_results([[("q", "b")], [("q", "a")]]) == [[results[1]], [PairScore(1.0)]]


class ReverseEachSet(TableReranker):
    """A set-wise reranker that implements ``score_sets`` alone: the last candidate of each set first."""

    pairwise = False

    def score_sets(self, sets):
        return [[float(i) for i in range(len(candidates))] for candidates in sets]


def test_the_default_set_results_of_a_setwise_reranker_read_its_score_sets():
    sets = ReverseEachSet({}).score_set_results([[("q", "a"), ("q", "b")], [("q", "c")]])
    assert sets == [[PairScore(0.0), PairScore(1.0)], [PairScore(0.0)]]


def test_each_query_of_a_call_and_each_set_of_score_sets_is_its_own_candidate_set():
    student = TableReranker({("q1", "a"): 0.9, ("q1", "b"): 0.1, ("q2", "a"): 0.1, ("q2", "b"): 0.9})
    teacher = TableReranker({("q1", "b"): 1.0, ("q2", "b"): 1.0})
    cascade = CascadeReranker(student, teacher, top=1)
    # q1: the student's top 1 is a (the teacher sees only it); q2: b
    assert cascade.score([("q1", "a"), ("q2", "a"), ("q1", "b"), ("q2", "b")]) == [2.0, 1.0, 1.0, 2.0]
    # two requests with the same query are two sets: each gets its own head and its own order scores
    sets = cascade.score_sets([[("q1", "a"), ("q1", "b")], [("q1", "b")]])
    assert sets == [[2.0, 1.0], [1.0]]
    with pytest.raises(DocrerankError, match="at least 1"):
        CascadeReranker(student, teacher, top=0)


@pytest.fixture(scope="module")
def student_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("student") / "student"
    CrossEncoderReranker(max_length=128).save(folder)
    return folder


@pytest.mark.slow
def test_a_saved_cascade_points_at_its_student_and_holds_the_teachers_backend_config(student_folder, tmp_path):
    from docrerank.backends import load_backend

    teacher = LLMReranker(load_backend(TINY), max_page_chars=400)
    cascade = CascadeReranker(Reranker.load(student_folder), teacher, top=2)
    cascade.save(tmp_path / "cascade")
    saved = json.loads((tmp_path / "cascade" / "reranker.json").read_text())
    assert saved["kind"] == "cascade" and saved["student"] == "student" and saved["top"] == 2
    assert saved["teacher"]["kind"] == "llm" and saved["teacher"]["backend"]["model"] == "smollm2-135m-instruct"
    assert saved["teacher"]["max_page_chars"] == 400
    loaded = Reranker.load(tmp_path / "cascade")
    assert isinstance(loaded, CascadeReranker) and loaded.top == 2
    assert isinstance(loaded.student, CrossEncoderReranker) and isinstance(loaded.teacher, LLMReranker)
    assert loaded.teacher.backend.config == teacher.backend.config and loaded.teacher.max_page_chars == 400
    pages = [
        "The structural break is detected at observation 42 of the series.",
        "Bananas are yellow when ripe.",
        "The break date is estimated by minimising the residual sum of squares.",
    ]
    query = "At which observation is the structural break detected?"
    assert loaded.score([(query, p) for p in pages]) == cascade.score([(query, p) for p in pages])
    ranked = loaded.rank(query, pages)
    assert sorted(s for _, s in ranked) == [1.0, 2.0, 3.0]
    results = loaded.score_results([(query, p) for p in [" ", *pages]])  # a page without text: last, with why
    assert [r.ok for r in results] == [False, True, True, True] and "has no text" in results[0].error
    assert results[0].score == UNSCORED and sorted(r.score for r in results[1:]) == [1.0, 2.0, 3.0]


@pytest.mark.slow
def test_rerank_command_with_the_cascade(student_folder, vignette_store, tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"backends": {"generator": TINY, "verifier": TINY}}))
    pages = vignette_store.page_ids
    queries = tmp_path / "queries.jsonl"
    rows = [{"query_id": "q1", "query": "At which observation is the structural break detected?"}]
    queries.write_text("".join(json.dumps(r) + "\n" for r in rows))
    write_trec({"q1": [(p, 1.0 / (i + 1)) for i, p in enumerate(pages)]}, tmp_path / "first.trec")
    result = run_cli(
        "rerank", "--pages", vignette_store.root, "--queries", queries, "--trec", tmp_path / "first.trec",
        "--out", tmp_path / "cascade.trec", "--reranker", "cascade", "--model", student_folder,
        "--config", config, "--cascade-top", "2",
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr[-2000:]
    reranked, errors = read_trec(tmp_path / "cascade.trec")
    assert not errors and sorted(p for p, _ in reranked["q1"]) == sorted(pages)
    assert [s for _, s in reranked["q1"]] == [3.0, 2.0, 1.0]


@pytest.mark.slow
def test_rerank_without_a_reranker_runs_the_default_chain(sample_pages, tmp_path):
    """The default: the shipped fusion (on the bundled EmbeddingGemma) orders the first stage's top --k, the
    config's LLM (here the tiny one: plumbing, not quality) re-orders the fusion's top 3, the rest keep the
    fusion's order; and the command says which reranker ran, with its figures."""
    bundled_encoder("embeddinggemma")
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"backends": {"generator": TINY, "verifier": TINY}}))
    candidates = [p for p in sample_pages.page_ids if sample_pages[p].text.strip()][:6]
    query = "Which tests for structural change does the package implement?"
    (tmp_path / "q.jsonl").write_text(json.dumps({"query_id": "q1", "query": query}) + "\n")
    write_trec({"q1": [(p, 1.0 / (i + 1)) for i, p in enumerate(candidates)]}, tmp_path / "first.trec")
    result = run_cli(
        "rerank", "--pages", sample_pages.root, "--queries", tmp_path / "q.jsonl", "--trec", tmp_path / "first.trec",
        "--out", tmp_path / "chain.trec", "--config", config,
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr[-2000:]
    said = " ".join(result.stdout.split())
    assert "the default chain: the fusion trained on the generated data" in said and "p = 0.043" in said
    chain = [p for p, _ in read_trec(tmp_path / "chain.trec")[0]["q1"]]
    fusion = Reranker.load(default_chain.STUDENT)
    scores = fusion.score([(query, sample_pages[p]) for p in candidates])
    by_fusion = [p for _, p in sorted(zip(scores, candidates, strict=True), key=lambda pair: -pair[0])]
    assert sorted(chain[:3]) == sorted(by_fusion[:3]) and chain[3:] == by_fusion[3:]


@pytest.mark.slow
def test_serve_without_a_reranker_starts_with_the_default_chain(tmp_path):
    """`serve` with no --reranker serves the default chain (named so) and says that the LLM is slow on a CPU;
    nothing is loaded until the first request."""
    port = free_port()
    command = [*docrerank_command(), "serve", "--port", str(port)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert health_answer(process, f"http://127.0.0.1:{port}", time.monotonic() + 120).status_code == 200
    finally:
        process.terminate()
        output = " ".join(process.communicate(timeout=30)[0].split())
    assert f"serving cascade-{default_chain.STUDENT.name} at http://127.0.0.1:{port}/v1/rerank" in output
    assert "the default chain: the fusion trained on the generated data" in output
    assert "the LLM is slow on a CPU" in output
