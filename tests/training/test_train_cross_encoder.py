"""Training the CPU cross-encoder: it learns the pipeline data and reports held-out documents, the score it
trains is the score it ranks by, and data-parallel training runs as 2 CPU processes (gloo). A killed training
resuming from its checkpoint is tests/reliability/test_ingest_train_resume.py."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from docrerank.rerankers import CrossEncoderReranker, Reranker
from docrerank.retrieval import read_trec
from docrerank.training import read_groups, split_by_document
from docrerank.training.evaluator import HeldOutEvaluator
from tests.helpers import invoke_cli

pytestmark = pytest.mark.slow


@pytest.mark.timeout(1200)  # ~2.5 min on 2 idle cores: one epoch, two held-out and two own-document evaluations
def test_training_on_the_pipeline_data_learns_and_reports_held_out_documents(training_sets, tmp_path):
    """The mixture of the sample documents (hand-labeled positives and negatives, rule-based negatives, mined
    pages), 30% of the documents held out. Training must rank its own documents' candidates better than the
    untrained start (the same ir-measures nDCG@5, on 12 of its groups), and the held-out nDCG@5 before and
    after must be recorded and printed.

    Not asserted: better nDCG@5 on the held-out documents. With the ~44 positives CI can afford it does not
    move beyond noise (measured 0.310 -> 0.336 on 19 queries); a fresh scoring head needs far more
    positives than that to learn relevance that transfers (the teacher-labelled data of issue 11)."""
    out = tmp_path / "trained"
    config = tmp_path / "train.yaml"
    settings = {"held_out": 0.3, "epochs": 1, "groups_per_batch": 4, "learning_rate": 2e-4, "depth": 4}
    settings["first_stage"] = "bm25"  # the guard's baseline (the default, EmbeddingGemma, costs minutes here)
    config.write_text(yaml.safe_dump({"train": {**settings, "save_steps": 1000}}))
    result = invoke_cli("train", "--data", training_sets.mixture, "--out", out, "--config", config)
    assert result.exit_code == 0, result.stdout[-3000:]
    summary = json.loads((out / "training.json").read_text())
    assert summary["held_out_groups"] >= 15 and summary["steps"] == 11
    before, after = summary["before"]["nDCG@5"], summary["after"]["nDCG@5"]
    assert "held out:" in result.stdout and f"nDCG@5 {before:.3f}" in result.stdout
    assert f"nDCG@5 {after:.3f}" in result.stdout
    (guard,) = summary["guard"]
    assert guard["source"] == "held-out" and guard["queries"] == summary["held_out_groups"]
    assert guard["start"] == pytest.approx(before) and guard["trained"] == pytest.approx(after)
    assert f"first stage (bm25) {guard['first_stage']:.3f}" in result.stdout

    trained_on, held = split_by_document(read_groups(training_sets.mixture), 0.3, seed=0)
    assert {g.doc_id for g in held} == set(summary["held_out_documents"])
    own = HeldOutEvaluator(trained_on[:12], depth=4)
    start, learned = own(CrossEncoderReranker())["nDCG@5"], own(Reranker.load(out))["nDCG@5"]
    print(f"own documents nDCG@5: untrained {start:.3f}, trained {learned:.3f}")
    assert learned >= start + 0.15, (start, learned)

    # the saved reranker reranks a first-stage run of held-out queries (the README's next step)
    held_docs = set(summary["held_out_documents"])
    queries = tmp_path / "held-out.jsonl"
    rows = [json.loads(line) for line in training_sets.export_jsonl.read_text().splitlines()]
    held_rows = [r for r in rows if r["doc_id"] in held_docs][:6]
    queries.write_text("".join(json.dumps({"query": r["query"], "page_id": r["page_id"]}) + "\n" for r in held_rows))
    store = training_sets.store.root
    retrieved = invoke_cli(
        "retrieve", "--pages", store, "--queries", queries, "--out", tmp_path / "bm25.trec", "--retriever", "bm25"
    )
    assert retrieved.exit_code == 0, retrieved.stdout
    reranked = invoke_cli(
        "rerank", "--pages", store, "--queries", queries, "--trec", tmp_path / "bm25.trec",
        "--out", tmp_path / "reranked.trec", "--reranker", "saved", "--model", out, "--k", "5",
    )  # fmt: skip
    assert reranked.exit_code == 0, reranked.stdout[-2000:]
    rankings, errors = read_trec(tmp_path / "reranked.trec")
    assert not errors and len(rankings) == len(held_rows) and all(len(r) == 5 for r in rankings.values())
    assert "MRR@5" in reranked.stdout


def test_the_trained_score_is_the_ranking_score(training_sets):
    """margins (what the loss sees) and score (what rank uses) are the same best-chunk logit."""
    reranker = CrossEncoderReranker()
    reranker.model.eval()
    group = next(g for g in read_groups(training_sets.export) if len(g.page.text.split()) > 200)  # several chunks
    pairs = [(query, page) for query, page, _ in group.pairs()]
    with torch.no_grad():
        margins = reranker.margins(pairs)
    assert torch.sigmoid(margins).tolist() == pytest.approx(reranker.score(pairs), abs=1e-5)


def _small_pairs(training_sets, path: Path, groups: int = 12) -> Path:
    lines, starts = [], 0
    for line in training_sets.pairs.read_text().splitlines():
        starts += json.loads(line)["label"] == 1
        if starts > groups:
            break
        lines.append(line)
    path.write_text("\n".join(lines) + "\n")
    return path


def test_data_parallel_training_on_two_cpu_processes(training_sets, tmp_path):
    data = _small_pairs(training_sets, tmp_path / "pairs.jsonl", groups=8)
    out = tmp_path / "ddp"
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    args = ["train", "--data", data, "--out", out, "--batch", "2", "--max-steps", "2", "--held-out", "0"]
    result = subprocess.run(
        [*torchrun, "-m", "docrerank.cli.app", *map(str, args)], capture_output=True, text=True, timeout=900
    )
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((out / "training.json").read_text())
    assert summary["processes"] == 2 and summary["steps"] == 2
    assert result.stdout.count("trained cross-encoder") == 1  # the main process reports, the other does not
    assert "nothing guards this model" in " ".join(result.stdout.split())  # --held-out 0 and no --guard-benchmark
    reranker = Reranker.load(out)
    assert len(reranker.score([("a query", "a page text")])) == 1
