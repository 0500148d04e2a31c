"""The guard: a trained model against its first stage and its untrained start, on held-out documents and on
a benchmark of people's questions; ``--require-improvement`` keeps a model that is not better from being
saved as the model (exit 4)."""

from __future__ import annotations

import json

import pytest

from docrerank.errors import DocrerankError
from docrerank.pages.content import PageContent
from docrerank.rerankers import CrossEncoderReranker, Reranker
from docrerank.training.data import TrainingGroup
from docrerank.training.evaluator import HeldOutEvaluator
from docrerank.training.guard import compare
from tests.helpers import ROOT, run_cli, steel_pairs

BEIR_MINI = ROOT / "tests" / "data" / "beir-mini"


def test_the_guard_names_each_baseline_the_model_ranks_below():
    first, start = {"a": 1.0, "b": 1.0, "c": 0.5}, {"a": 0.0, "b": 0.5, "c": 0.5}
    below_first = compare("held-out", "bm25", first, start, {"a": 0.5, "b": 1.0, "c": 0.5})
    assert below_first.worse_than == ["the first stage (bm25)"] and not below_first.improves
    assert below_first.trained == pytest.approx(2 / 3) and below_first.queries == 3
    better = compare("held-out", "bm25", first, start, {"a": 1.0, "b": 1.0, "c": 1.0})
    assert better.worse_than == [] and better.improves
    tie = compare("held-out", "bm25", first, start, dict(first))
    assert tie.worse_than == [] and not tie.improves and tie.p_vs_first_stage == 1.0  # a tie is no improvement


WORDS = "granite harbor violin glacier saffron lantern orchid compass falcon meadow quartz tundra".split()


def _groups(n: int) -> list[TrainingGroup]:
    pages = [PageContent(f"A page about the {WORDS[i]} and its history.", page_id=f"p{i}") for i in range(n)]
    return [TrainingGroup(f"what about the {WORDS[i]}?", page, doc_id=f"d{i}") for i, page in enumerate(pages)]


def test_equal_scores_do_not_rank_the_positive_first():
    """Ties keep the candidates' order, which is shuffled: a reranker that scores every page the same is not
    credited with a perfect ranking (the positive is the first candidate before the shuffle)."""
    evaluator = HeldOutEvaluator(_groups(12), depth=6)
    constant = evaluator.measure([0.0] * len(evaluator.pairs()))
    assert constant["nDCG@5"] < 0.8 and set(constant["per_query"]) == {f"q{i}" for i in range(12)}
    perfect = evaluator.measure([float(p.page_id == f"p{WORDS.index(q[15:-1])}") for q, p in evaluator.pairs()])
    assert perfect["nDCG@5"] == pytest.approx(1.0)


def test_the_first_stage_ranks_the_held_out_candidates_by_its_own_scores():
    """BM25 over the candidates finds each question's page by its one word that is on no other page."""
    evaluator = HeldOutEvaluator(_groups(12), depth=6)
    assert evaluator.first_stage("bm25")["nDCG@5"] == pytest.approx(1.0)
    with pytest.raises(DocrerankError, match="unknown retriever"):
        evaluator.first_stage("nonsense")


@pytest.mark.slow
def test_require_improvement_keeps_a_model_below_its_baselines_apart_and_exits_4(tmp_path):
    """BM25 ranks every question of the BEIR fixture first (NDCG@5 1.000, README), so a cross-encoder trained two
    steps on steel figures cannot beat it: the guard says so, and the model is not saved as OUT."""
    out = tmp_path / "out"
    args = ["train", "--data", steel_pairs(tmp_path / "pairs.jsonl"), "--out", out, "--batch", "2", "--max-steps", "2"]
    args += ["--held-out", "0.3", "--first-stage", "bm25", "--guard-benchmark", BEIR_MINI, "--guard-k", "5"]
    result = run_cli(*args, "--require-improvement", timeout=600)
    assert result.exit_code == 4, result.stderr[-2000:]
    summary = json.loads((out / "training.json").read_text())
    held_out, beir = summary["guard"]
    assert held_out["source"] == "held-out" and beir["source"] == "beir-mini" and beir["queries"] == 8
    assert beir["first_stage"] == pytest.approx(1.0) and beir["first_stage_name"] == "bm25"
    assert beir["start"] == pytest.approx(0.699, abs=5e-4)  # `evaluate`'s untrained cross-encoder row (README)
    assert not summary["improved"] and summary["saved_to"] == str(out / "rejected-model")
    output = " ".join(result.stdout.split())
    assert f"beir-mini, 8 queries: first stage (bm25) 1.000, untrained {beir['start']:.3f}" in output
    for guard in (held_out, beir):
        said = f"WORSE: on {guard['source']} the trained model ranks below the first stage (bm25)" in output
        assert said == (guard["trained"] < guard["first_stage"])
    assert "not saved as the model" in output and "saved to" not in output
    assert isinstance(Reranker.load(out / "rejected-model"), CrossEncoderReranker)
    with pytest.raises(DocrerankError):
        Reranker.load(out)
