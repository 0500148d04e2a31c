"""The cross-encoder on ONNX Runtime: exported beside the saved model on first use, fp32 scores equal to
PyTorch's, int8 (dynamic quantization) close and in nearly the same order; `rerank --runtime` serves the same
ranking; a reranker that is not a cross-encoder is refused by name."""

from __future__ import annotations

import json

import pytest

from docrerank.rerankers import Reranker
from docrerank.rerankers.cross_encoder import CrossEncoderReranker
from docrerank.retrieval import read_trec, write_trec
from tests.helpers import invoke_cli

pytest.importorskip("onnxruntime")  # the `onnx` extra, in the dev install
scipy_stats = pytest.importorskip("scipy.stats")

QUESTIONS = [
    "At which observation is the structural break detected?",
    "Which R package tests for structural change?",
    "What does the OLS-based CUSUM process show?",
    "How is personal income in the US plotted?",
]


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    folder = tmp_path_factory.mktemp("onnx") / "cross-encoder"
    CrossEncoderReranker(seed=7).save(folder)  # the bundled MiniLM and a seeded head: a saved model's folder
    return folder


def test_onnx_scores_equal_pytorch_and_int8_keeps_the_order(saved, vignette_store):
    pairs = [(q, page) for q in QUESTIONS for page in vignette_store if page.text.strip()]
    torch_scores = Reranker.load(saved).score(pairs)
    onnx = Reranker.load(saved).use_runtime("onnx")
    int8 = Reranker.load(saved).use_runtime("onnx-int8")
    onnx_scores, int8_scores = onnx.score(pairs), int8.score(pairs)
    assert max(abs(a - b) for a, b in zip(torch_scores, onnx_scores, strict=True)) < 1e-4
    assert max(abs(a - b) for a, b in zip(torch_scores, int8_scores, strict=True)) < 0.05
    assert scipy_stats.spearmanr(torch_scores, int8_scores).statistic > 0.8
    assert (saved / "onnx" / "model.onnx").is_file() and (saved / "onnx" / "model_int8.onnx").is_file()
    assert onnx.settings()["runtime"] == "onnx" and "runtime" not in Reranker.load(saved).settings()


def test_rerank_on_onnx_serves_the_pytorch_ranking_and_refuses_other_rerankers(saved, vignette_store, tmp_path):
    queries = tmp_path / "queries.jsonl"
    queries.write_text("".join(json.dumps({"query_id": f"q{i}", "query": q}) + "\n" for i, q in enumerate(QUESTIONS)))
    pages = [p.page_id for p in vignette_store]
    write_trec({f"q{i}": [(p, 1.0) for p in pages] for i in range(len(QUESTIONS))}, tmp_path / "first.trec")
    args = ["rerank", "--pages", vignette_store.root, "--queries", queries, "--trec", tmp_path / "first.trec"]
    args += ["--reranker", "saved", "--model", saved]
    on_torch = invoke_cli(*args, "--out", tmp_path / "torch.trec")
    on_onnx = invoke_cli(*args, "--out", tmp_path / "onnx.trec", "--runtime", "onnx")
    assert on_torch.exit_code == on_onnx.exit_code == 0, on_onnx.stdout
    orders = [
        {q: [p for p, _ in r] for q, r in read_trec(tmp_path / f"{name}.trec")[0].items()} for name in ("torch", "onnx")
    ]
    assert orders[0] == orders[1]
    llm = invoke_cli(*args[:7], "--reranker", "llm", "--runtime", "onnx", "--out", tmp_path / "x.trec")
    assert "--runtime onnx runs a cross-encoder; this reranker is a llm" in str(llm.exception)  # exit 2 by the app
