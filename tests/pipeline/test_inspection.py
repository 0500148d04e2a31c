"""`docrerank inspect` on hand-made bad datasets, one per check: each check finds its offence, names the
offending examples, and a clean dataset passes every check; --strict exits 1 only when a limit is crossed."""

from __future__ import annotations

import json

import pytest

from docrerank.evaluation.loaders import load_store
from docrerank.pipeline.inspection import InspectSettings, inspect_examples, read_examples
from tests.helpers import invoke_cli

GOOD = [
    {"page_id": "p1", "doc_id": "d1", "query": "Which year did the survey of household income start?", "answer": "1985",
     "negatives": [{"text": "Which year did the survey of household income end?", "generator": "llm:freeform"},
                   {"text": "Which year did the survey of farm income start?", "generator": "rule:entity",
                    "property": "named entity"}]},
    {"page_id": "p2", "doc_id": "d1", "query": "How many breakpoints does the fitted model estimate?", "answer": "two",
     "negatives": [{"text": "How many breakpoints does the null model estimate?", "generator": "llm:controlled",
                    "property": "number"}]},
    {"page_id": "p3", "doc_id": "d2", "query": "What bandwidth does the kernel estimator choose by default?",
     "answer": "Andrews' rule", "negatives": [{"text": "What bandwidth does the lag window choose by default?"}]},
]  # fmt: skip


def _write(tmp_path, rows) -> str:
    path = tmp_path / "queries.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return str(path)


def _checks(tmp_path, rows, **kwargs):
    examples, properties = read_examples(_write(tmp_path, rows))
    return {c.name: c for c in inspect_examples(examples, InspectSettings(), properties, **kwargs)}


def _with(change):
    rows = json.loads(json.dumps(GOOD))
    change(rows)
    return rows


def test_a_clean_dataset_passes_every_check(tmp_path):
    checks = _checks(tmp_path, GOOD)
    assert not [c.name for c in checks.values() if c.crossed], {n: c.detail for n, c in checks.items()}


def _copied_elsewhere(rows):
    rows.append({**rows[0], "page_id": "p9"})


def _reworded(rows):
    rows.append({**rows[1], "query": rows[1]["query"].replace("How many", "How much")})


def _answer_asked(rows):
    rows[0]["query"] = "Did the survey of household income start in 1985?"


def _negative_is_positive(rows):
    rows[1]["negatives"].append({"text": "how many breakpoints does THE fitted model estimate"})


def _no_negatives(rows):
    for row in rows[:2]:
        row["negatives"] = []


def _one_property(rows):
    more = [{"text": f"Which year did survey {i} start?", "property": "named entity"} for i in range(6)]
    rows[0]["negatives"].extend(more)


def _long_negatives(rows):
    for row in rows:
        for negative in row["negatives"]:
            negative["text"] += " and also what else is written around it on the page in that section"


@pytest.mark.parametrize(
    ("check", "change", "offender"),
    [
        ("duplicate_queries", _copied_elsewhere, "(pages p1, p9)"),
        ("near_duplicate_queries", _reworded, "(same page"),
        ("answer_in_query", _answer_asked, "1985"),
        ("trivial_negatives", _negative_is_positive, "THE fitted"),
        ("no_negative", _no_negatives, "(page p1)"),
        ("property_skew", _one_property, "named entity: 7"),
        ("length_skew", _long_negatives, None),
    ],
)
def test_each_check_finds_its_offence_and_names_it(tmp_path, check, change, offender):
    found = _checks(tmp_path, _with(change))[check]
    assert found.crossed, found.detail
    if offender:
        assert any(offender in example for example in found.examples), found.examples


def test_leaks_into_a_benchmark_are_found_page_document_text_and_question(vignette_store, tmp_path):
    pages = [p for p in vignette_store if p.text.strip()]
    queries, qrels = tmp_path / "bench-queries.jsonl", tmp_path / "bench-qrels.trec"
    queries.write_text(json.dumps({"query_id": "b1", "query": "Which R package tests for structural change?"}) + "\n")
    qrels.write_text(f"b1 0 {pages[0].page_id} 1\n")
    benchmark = load_store(vignette_store, queries, qrels)
    rows = [
        {**GOOD[0], "page_id": pages[0].page_id, "doc_id": pages[0].doc_id},  # the benchmark's own page
        {**GOOD[1], "page_id": pages[1].page_id, "doc_id": pages[1].doc_id},  # another page of its document
        {**GOOD[2], "query": "Which R package tests for structural changes?"},  # nearly its question
    ]
    checks = _checks(tmp_path, rows, against=benchmark)
    assert checks["leaked_pages"].value == 1 and pages[0].page_id in checks["leaked_pages"].examples[0]
    assert checks["leaked_documents"].value == 2
    assert checks["leaked_questions"].value == 1 and "structural changes" in checks["leaked_questions"].examples[0]
    assert _checks(tmp_path, GOOD, against=benchmark)["leaked_pages"].value == 0


def test_the_command_reports_writes_json_reads_limits_and_exits_1_only_when_strict(tmp_path):
    bad = _write(tmp_path, _with(_copied_elsewhere))
    plain = invoke_cli("inspect", bad, "--out", tmp_path / "checks.json")
    strict = invoke_cli("inspect", bad, "--strict")
    assert plain.exit_code == 0 and strict.exit_code == 1, plain.stdout
    assert "duplicate_queries" in plain.stdout and "'Which year did the survey" in plain.stdout
    assert json.loads((tmp_path / "checks.json").read_text())["crossed"] == ["duplicate_queries"]
    loose = tmp_path / "inspect.yaml"
    loose.write_text("inspect:\n  max_duplicate_queries: 0.9\n  max_near_duplicate_queries: 0.9\n")
    assert invoke_cli("inspect", bad, "--strict", "--config", loose).exit_code == 0
