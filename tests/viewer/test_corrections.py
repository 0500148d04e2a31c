"""A person's corrections (RUN/corrections.jsonl) flow into export, mix and stats, keyed by page and query
text; undo keeps the history; readings become labeled pairs that evaluate-verifier reads."""

from __future__ import annotations

import json

import pytest

from docrerank.errors import DocrerankError
from docrerank.pipeline.corrections import Correction, append_correction, read_corrections
from docrerank.pipeline.pairs import parse_pairs
from docrerank.viewer import RunView
from tests.helpers import invoke_cli


def _export(run, store, out, *extra) -> list[dict]:
    result = invoke_cli("export", run, "--pages", store.root, "--out", out, "--format", "jsonl", *extra)
    assert result.exit_code == 0, result.stdout
    return [json.loads(line) for line in (out / "queries.jsonl").read_text().splitlines()]


def _negatives(rows) -> dict[str, dict]:
    return {n["text"]: n for row in rows for n in row["negatives"]}


def _find(view: RunView, text: str):
    return next(item for item in view.all_items() if item.record.text == text)


def test_each_kind_of_correction_is_applied_by_export_and_undone_with_history(run_copy, vignette_store, tmp_path):
    view = RunView.open(run_copy)
    before = _export(run_copy, vignette_store, tmp_path / "before")
    kept = _negatives(before)
    rejected = [i for i in view.all_items() if i.status == "rejected" and i.record.kind == "negative"]
    assert rejected, "the fixture's selection rejects some negatives"
    wrong = "Which Python package implements tests for structural change in linear regression models?"
    dropped = "Which R package implements tests for structural change in logistic regression models?"
    positive = "From which month and year does the USIncExp2 window start?"

    def correct(action, item, **fields):
        record = item.record
        return append_correction(run_copy, Correction(action=action, page_id=record.page_id, query=record.text,
                                                      kind=record.kind, record=record, **fields))  # fmt: skip

    correct("answerable", _find(view, wrong))  # the verifier (here: the given label) was wrong: out
    correct("unanswerable", rejected[0])  # a negative the selection left out: in, marked
    correct("edit", _find(view, positive), text="In which month and year does the USIncExp2 window begin?")
    drop = correct("drop", _find(view, dropped))
    append_correction(run_copy, Correction(action="undo", page_id=drop.page_id, query=drop.query, undoes=drop.id))
    append_correction(run_copy, Correction(action="drop", page_id=view.page_ids[0], query="a question no run made"))

    after = _export(run_copy, vignette_store, tmp_path / "after")
    negatives = _negatives(after)
    assert wrong in kept and wrong not in negatives
    assert dropped in negatives  # its drop was undone
    assert negatives[rejected[0].record.text]["corrected"] == "unanswerable"
    edited = next(row for row in after if row["query"].startswith("In which month"))
    assert (edited["generator"], edited["corrected"]) == ("person", "edited")
    assert len(edited["negatives"]) == len(next(r for r in before if r["query"] == positive)["negatives"]) + 1
    summary = json.loads((tmp_path / "after" / "provenance.json").read_text())["summary"]["corrections"]
    assert summary["in_force"] == 4 and summary["dropped"] == 1 and summary["added"] == 1 and summary["edited"] == 1
    assert [u["query"] for u in summary["unmatched"]] == ["a question no run made"]
    assert len(read_corrections(run_copy)) == 6  # the history: undone and undo lines kept

    ignored = _export(run_copy, vignette_store, tmp_path / "ignored", "--ignore-corrections")
    assert ignored == before and not (tmp_path / "ignored" / "corrected_pairs.jsonl").exists()

    lines = (tmp_path / "after" / "corrected_pairs.jsonl").read_text().splitlines()
    pairs, errors = parse_pairs(lines, "corrected_pairs.jsonl", vignette_store)  # evaluate-verifier's reader
    assert not errors and {(p.query, p.answerable) for p in pairs} == {(wrong, True), (rejected[0].record.text, False)}


def test_mix_and_stats_apply_and_count_the_corrections(run_copy, vignette_store, tmp_path):
    view = RunView.open(run_copy)
    item = next(i for i in view.all_items() if i.record.kind == "negative" and i.status == "kept")
    record = item.record
    append_correction(run_copy, Correction(action="drop", page_id=record.page_id, query=record.text))
    append_correction(run_copy, Correction(action="answerable", page_id=record.page_id, query="not in the run"))
    recipe = tmp_path / "mix.yaml"  # generated negatives only, every kind: the run has no mined pages
    recipe.write_text("mix:\n  mined: 0\n  generated: 1\n  property_negatives: true\n  negatives_per_example: 9\n")
    args = ["mix", "--pages", vignette_store.root, "--run-dir", run_copy, "--config", recipe, "--format", "jsonl"]
    mixed = invoke_cli(*args, "--out", tmp_path / "mixed")
    raw = invoke_cli(*args, "--out", tmp_path / "raw", "--ignore-corrections")
    assert mixed.exit_code == raw.exit_code == 0, mixed.stdout
    texts = {name: (tmp_path / name / "examples.jsonl").read_text() for name in ("mixed", "raw")}
    assert record.text in texts["raw"] and record.text not in texts["mixed"]
    stats = invoke_cli("stats", run_copy, "--no-embeddings")
    assert stats.exit_code == 0, stats.stdout
    assert "corrections in force: 2 (1 answerable, 1 drop)" in stats.stdout
    assert "1 no longer match an item of the run" in stats.stdout and "not in the run" in stats.stdout


def test_a_bad_line_in_the_corrections_is_named(run_copy):
    (run_copy / "corrections.jsonl").write_text('{"action": "drop"}\n')
    with pytest.raises(DocrerankError, match=r"corrections.jsonl, line 1, is not a correction"):
        read_corrections(run_copy)


def test_a_later_reading_of_the_same_query_decides_and_the_earlier_is_not_unmatched(run_copy):
    from docrerank.pipeline.corrections import apply_corrections
    from docrerank.pipeline.export import read_selected

    view = RunView.open(run_copy)
    item = next(i for i in view.all_items() if i.record.kind == "negative" and i.status == "kept")
    record = item.record
    for action in ("answerable", "unanswerable"):  # a person changes their mind: the negative stays
        append_correction(run_copy, Correction(action=action, page_id=record.page_id, query=record.text))
    records = read_selected(run_copy, corrections=False)
    applied, summary = apply_corrections(records, read_corrections(run_copy))
    assert record.text in {r.text for r in applied} and summary.dropped == 0
    assert summary.in_force == 2 and summary.unmatched == []
