"""Exit codes and one-line errors of every command, through ``docrerank``'s real entry point.

0 done, 1 some inputs failed (each named, the rest done), 2 a usage or user error (one line naming the file
and the fix), 3 an internal error (one line and the file the traceback went to). Nothing here loads a model:
every case stops before one is needed, as a user's wrong path or broken file does.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import pytest

from docrerank.cli.app import EXIT_INPUTS_FAILED, EXIT_INTERNAL, EXIT_INTERRUPTED, EXIT_USAGE
from tests.cli.common import error_line
from tests.helpers import ROOT

BEIR = ROOT / "tests" / "data" / "beir-mini"
BAD_YAML = "backends:\n  verifier: {type: llamacpp\nseed: 1\n"  # an unclosed flow mapping: line 3 is where it shows


@pytest.fixture
def files(tmp_path, vignette_store) -> dict[str, Path]:
    """A store, a good queries file (with its positive page), an empty run, and the broken files."""
    page = next(iter(vignette_store))
    paths = {"store": Path(vignette_store.root), "missing": tmp_path / "no-such-file.yaml"}
    paths["queries"] = tmp_path / "queries.jsonl"
    paths["queries"].write_text(json.dumps({"query_id": "q1", "query": "structural change", "page_id": page.page_id}))
    paths["run"] = tmp_path / "first.trec"
    paths["run"].write_text("")
    paths["bad_yaml"] = tmp_path / "broken.yaml"
    paths["bad_yaml"].write_text(BAD_YAML)
    paths["bad_jsonl"] = tmp_path / "broken.jsonl"
    paths["bad_jsonl"].write_text('{"page_id": "x", "query": "an unfinished line"\nnot json at all\n')
    return paths


def _args(case: str, f: dict[str, Path], tmp: Path) -> tuple:
    store, out = f["store"], tmp / "out"
    return {
        # a path that does not exist
        "verify --pairs": ("verify", "--pages", store, "--pairs", f["missing"], "--out", out),
        "evaluate-verifier --pairs": ("evaluate-verifier", "--pairs", f["missing"], "--pages", store, "--out", out),
        "rerank --queries": ("rerank", "--pages", store, "--queries", f["missing"], "--trec", f["run"], "--out", out),
        "rerank --trec": ("rerank", "--pages", store, "--queries", f["queries"], "--trec", f["missing"], "--out", out),
        "retrieve --queries": ("retrieve", "--pages", store, "--queries", f["missing"], "--out", out),
        "mine --queries": ("mine", "--pages", store, "--queries", f["missing"], "--out", out),
        "mine --trec": ("mine", "--pages", store, "--queries", f["queries"], "--trec", f["missing"], "--out", out),
        "generate --config": ("generate", "--pages", store, "--run-dir", out, "--config", f["missing"]),
        "verify --config": (
            "verify", "--pages", store, "--pairs", f["queries"], "--out", out, "--config", f["missing"],
        ),
        "train --config": ("train", "--data", f["queries"], "--out", out, "--config", f["missing"]),
        "label --teacher": ("label", "--data", f["queries"], "--out", out, "--teacher", f["missing"]),
        "mix --config": ("mix", "--pages", store, "--out", out, "--config", f["missing"]),
        "export RUN": ("export", f["missing"], "--pages", store, "--out", out),
        "stats RUN": ("stats", f["missing"]),
        "evaluate --benchmark": ("evaluate", "--benchmark", f["missing"], "--out", out),
        "evaluate --queries": (
            "evaluate", "--benchmark", store, "--queries", f["missing"], "--qrels", f["run"], "--out", out,
        ),
        "evaluate --qrels": (
            "evaluate", "--benchmark", store, "--queries", f["queries"], "--qrels", f["missing"], "--out", out,
        ),
        "import DATASET": ("import", tmp / "no-such.parquet", "--pages", out, "--positives", tmp / "p.jsonl"),
        "backends check": ("backends", "check", f["missing"]),
    }[case]  # fmt: skip


MISSING = [
    "verify --pairs", "evaluate-verifier --pairs", "rerank --queries", "rerank --trec", "retrieve --queries",
    "mine --queries", "mine --trec", "generate --config", "verify --config", "train --config", "label --teacher",
    "mix --config", "export RUN", "stats RUN", "evaluate --benchmark", "evaluate --queries", "evaluate --qrels",
    "import DATASET", "backends check",
]  # fmt: skip


@pytest.mark.parametrize("case", MISSING)
def test_a_missing_file_is_one_line_naming_it_and_exit_2(case, files, tmp_path, docrerank):
    args = _args(case, files, tmp_path)
    result = docrerank(*args)
    assert result.exit_code == EXIT_USAGE, (result.stdout, result.stderr)
    line = error_line(result)
    missing = next(str(a) for a in args if "no-such" in str(a))
    assert missing in line, line


def _yaml_args(case: str, f: dict[str, Path], tmp: Path) -> tuple:
    store, out, bad = f["store"], tmp / "out", f["bad_yaml"]
    return {
        "generate --config": ("generate", "--pages", store, "--run-dir", out, "--config", bad),
        "verify --config": ("verify", "--pages", store, "--pairs", f["queries"], "--out", out, "--config", bad),
        "rerank --config": (
            "rerank", "--pages", store, "--queries", f["queries"], "--trec", f["run"], "--out", out, "--config", bad,
            "--reranker", "llm",
        ),
        "mine --config": (
            "mine", "--pages", store, "--queries", f["queries"], "--out", out, "--verify", "--config", bad,
        ),
        "train --config": ("train", "--data", f["queries"], "--out", out, "--config", bad),
        "label --teacher": ("label", "--data", f["queries"], "--out", out, "--teacher", bad),
        "mix --config": ("mix", "--pages", store, "--out", out, "--config", bad),
        "evaluate --config": (
            "evaluate", "--benchmark", BEIR, "--out", out, "--first-stage", "bm25", "--rerankers", "llm",
            "--config", bad,
        ),
        "backends check": ("backends", "check", bad),
    }[case]  # fmt: skip


YAML_CASES = [
    "generate --config", "verify --config", "rerank --config", "mine --config", "train --config", "label --teacher",
    "mix --config", "evaluate --config", "backends check",
]  # fmt: skip


@pytest.mark.parametrize("case", YAML_CASES)
def test_malformed_yaml_is_one_line_naming_the_file_and_line(case, files, tmp_path, docrerank):
    result = docrerank(*_yaml_args(case, files, tmp_path))
    assert result.exit_code == EXIT_USAGE, (result.stdout, result.stderr)
    line = error_line(result)
    assert f"{files['bad_yaml']}:3:" in line and "not valid YAML" in line and "fix the syntax" in line, line


def test_a_config_that_does_not_validate_names_the_file_and_the_field(files, tmp_path, docrerank):
    config = tmp_path / "pipeline.yaml"
    config.write_text("seed: [1, 2]\npages_per_shard: 0\n")
    result = docrerank("generate", "--pages", files["store"], "--run-dir", tmp_path / "run", "--config", config)
    assert result.exit_code == EXIT_USAGE
    line = error_line(result)
    assert f"{config}: not a valid pipeline config" in line and "seed:" in line and "pages_per_shard:" in line
    assert not (tmp_path / "run").exists()

    config.write_text("train:\n  learning_rate: fast\n")
    result = docrerank("train", "--data", files["queries"], "--out", tmp_path / "model", "--config", config)
    assert result.exit_code == EXIT_USAGE
    line = error_line(result)
    assert f"{config}: bad training settings" in line and "learning_rate" in line

    config.write_text("- a list\n- not settings\n")
    result = docrerank("mix", "--pages", files["store"], "--out", tmp_path / "mix", "--config", config)
    assert result.exit_code == EXIT_USAGE
    assert f"{config}: a mixture config (YAML) holds 'key: value' lines, not a YAML list" in error_line(result)


def test_malformed_jsonl_lines_are_skipped_each_named_and_exit_1(files, tmp_path, docrerank):
    bad = files["bad_jsonl"]
    result = docrerank("verify", "--pages", files["store"], "--pairs", bad, "--out", tmp_path / "v.jsonl")
    assert result.exit_code == EXIT_INPUTS_FAILED, result.stderr
    skipped = [line for line in result.stderr.splitlines() if line.startswith("skipped")]
    assert [line.split(": ")[0] for line in skipped] == [f"skipped {bad}:1", f"skipped {bad}:2"]
    assert "Traceback" not in result.stderr

    result = docrerank(
        "rerank", "--pages", files["store"], "--queries", bad, "--trec", files["run"], "--out", tmp_path / "r.trec",
        "--reranker", "none",
    )  # fmt: skip
    assert result.exit_code == EXIT_INPUTS_FAILED, result.stderr
    assert f"skipped {bad}:1: not a JSON object" in result.stderr and "Traceback" not in result.stderr

    result = docrerank(
        "retrieve", "--pages", files["store"], "--queries", bad, "--out", tmp_path / "q.trec", "--retriever", "bm25"
    )
    assert result.exit_code == EXIT_INPUTS_FAILED, result.stderr
    assert f"skipped {bad}:2: not a JSON object" in result.stderr


def test_markup_in_skipped_lines_and_hints_is_printed_as_it_is(files, tmp_path, docrerank, monkeypatch):
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text(json.dumps({"page_id": "p[serve]", "query": "q [bold]x[/bold]"}) + "\n")
    result = docrerank("verify", "--pages", files["store"], "--pairs", pairs, "--out", tmp_path / "v.jsonl")
    assert result.exit_code == EXIT_INPUTS_FAILED
    assert f"skipped {pairs}:1: page 'p[serve]' is not in the store" in result.stderr

    queries = tmp_path / "queries.jsonl"
    queries.write_text(json.dumps({"query": "q", "page_id": "p[data]"}) + "\n")
    result = docrerank(
        "rerank", "--pages", files["store"], "--queries", queries, "--trec", files["run"], "--out", tmp_path / "r.trec",
        "--reranker", "none",
    )  # fmt: skip
    assert "page 'p[data]' is not in the store" in result.stderr

    # the install hint of a missing package keeps its extra: `evaluate` without ir-measures
    monkeypatch.setitem(sys.modules, "ir_measures", None)  # as if the package were not installed
    result = docrerank("evaluate", "--benchmark", BEIR, "--first-stage", "bm25", "--k", "3", "--out", tmp_path / "e")
    assert result.exit_code == EXIT_USAGE
    assert 'pip install "docrerank[eval]"' in error_line(result)


def test_an_internal_error_is_exit_3_with_the_traceback_in_a_file(tmp_path, docrerank, monkeypatch):
    import docrerank.cli.report as report_cli

    def broken(*args, **kwargs):
        raise RuntimeError("a bug [serve] in the report")

    monkeypatch.setattr(report_cli, "write_report", broken)  # a failure where no user error can be the cause
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    result = docrerank("report", tmp_path, "--out", tmp_path / "report.html")
    assert result.exit_code == EXIT_INTERNAL
    line = error_line(result)
    assert line.startswith("internal error (a bug in docrerank): RuntimeError: a bug [serve] in the report")
    (crash,) = tmp_path.glob("docrerank-crash-*.txt")
    assert str(crash) in line and "-vv" in line
    assert "Traceback" in crash.read_text() and "a bug [serve] in the report" in crash.read_text()

    verbose = docrerank("-vv", "report", tmp_path, "--out", tmp_path / "report.html")
    assert verbose.exit_code == EXIT_INTERNAL
    assert "Traceback (most recent call last)" in verbose.stderr and "in broken" in verbose.stderr


def test_ctrl_c_is_exit_130_not_the_code_of_failed_inputs(tmp_path, docrerank, monkeypatch):
    import docrerank.cli.report as report_cli

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt  # what Ctrl-C raises in the main thread

    monkeypatch.setattr(report_cli, "write_report", interrupted)
    result = docrerank("report", tmp_path, "--out", tmp_path / "report.html")
    assert result.exit_code == EXIT_INTERRUPTED != EXIT_INPUTS_FAILED
    assert "interrupted: rerun the same command" in result.stderr and "Traceback" not in result.stderr
