"""`evaluate` on benchmark files with bad lines: each is named (FILE:LINE, the fix), left out, and the rest is
evaluated (exit code 1), as `retrieve` does with its bad lines. BM25 first stage: no model is loaded."""

from __future__ import annotations

import json
import shutil

from docrerank.cli.app import EXIT_INPUTS_FAILED
from tests.helpers import ROOT

BEIR = ROOT / "tests" / "data" / "beir-mini"


def _skipped(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("skipped ")]


def test_bad_lines_of_a_beir_folder_are_named_and_the_rest_evaluated(tmp_path, docrerank):
    folder = tmp_path / "beir"
    shutil.copytree(BEIR, folder)
    corpus, queries, qrels = folder / "corpus.jsonl", folder / "queries.jsonl", folder / "qrels" / "test.tsv"
    with corpus.open("a") as f:
        f.write('{"_id": "d99", "text": "cut off\n{"_id": "d98"}\n')  # lines 11 and 12
    with queries.open("ab") as f:
        f.write(b'{"_id": "q99", "text": "caf\xe9 not UTF-8"}\n')  # line 10
    with qrels.open("a") as f:
        f.write("q1\td5\n")  # no score
    lines_of_qrels = len(qrels.read_text().splitlines())
    out = tmp_path / "eval"
    result = docrerank("evaluate", "--benchmark", folder, "--first-stage", "bm25", "--k", "3", "--out", out)
    assert result.exit_code == EXIT_INPUTS_FAILED, result.stderr
    assert "Traceback" not in result.stderr
    assert _skipped(result.stderr) == [
        f"skipped {corpus}:11: not a JSON line (Unterminated string starting at). Fix: fix or remove it",
        f"skipped {corpus}:12: a BEIR corpus line needs _id and text. Fix: add them or remove the line",
        f"skipped {queries}:10: not UTF-8 text. Fix: save the file as UTF-8 or remove the line",
        f"skipped {qrels}:{lines_of_qrels}: not a qrels line. Fix: write 'query-id<TAB>corpus-id<TAB>score' "
        "(an integer score) or remove the line",
    ]
    assert "4 bad line(s) left out" in result.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert "bm25" in summary["systems"] and "beir: 8 queries" in result.stdout  # the good lines, evaluated


def test_bad_lines_of_a_store_benchmark_and_of_a_run_file(vignette_store, tmp_path, docrerank):
    pages = [p.page_id for p in vignette_store]
    queries = tmp_path / "queries.jsonl"
    queries.write_text(
        json.dumps({"query_id": "q1", "query": "structural change tests"}) + "\n"
        + "{not json\n"
        + json.dumps({"query": "no id"}) + "\n"
    )  # fmt: skip
    qrels = tmp_path / "qrels.trec"
    qrels.write_text(f"q1 0 {pages[0]} 1\nq1 0 {pages[1]}\n")
    run = tmp_path / "first.trec"
    run.write_text(f"q1 Q0 {pages[0]} 1 2.0 bm25\nq1 Q0 {pages[1]} two 1.0 bm25\n")
    out = tmp_path / "eval"
    result = docrerank(
        "evaluate", "--benchmark", vignette_store.root, "--queries", queries, "--qrels", qrels,
        "--first-stage", run, "--out", out,
    )  # fmt: skip
    assert result.exit_code == EXIT_INPUTS_FAILED, result.stderr
    assert [line.split(": ")[0] for line in _skipped(result.stderr)] == [
        f"skipped {queries}:2",
        f"skipped {queries}:3",
        f"skipped {qrels}:2",
        f"skipped {run}:2",
    ]
    assert (out / "summary.json").is_file()
