"""TREC run files: round trip, order, and bad lines named with the rest kept."""

from __future__ import annotations

import pytest

from docrerank.retrieval import read_trec, write_trec


def test_a_run_round_trips_with_ranks_in_order(tmp_path):
    run = {"q1": [("p3", 9.5), ("p1", 2.25)], "q2": [("p2", 0.5)]}
    path = tmp_path / "run.trec"
    write_trec(run, path, tag="bm25")
    assert path.read_text().splitlines()[:2] == ["q1 Q0 p3 1 9.500000 bm25", "q1 Q0 p1 2 2.250000 bm25"]
    again, errors = read_trec(path)
    assert errors == [] and again == run


def test_reading_sorts_by_score_and_names_each_bad_line(tmp_path):
    path = tmp_path / "run.trec"
    path.write_text("q1 Q0 p1 2 1.0 x\nq1 Q0 p2 1 3.0 x\nq1 p9 1 1.0\n\nq2 Q0 p4 one 2.0 x\nq2 Q0 p5 1 2.0 x\n")
    run, errors = read_trec(path)
    assert run == {"q1": [("p2", 3.0), ("p1", 1.0)], "q2": [("p5", 2.0)]}
    assert [e.item for e in errors] == [f"{path}:3", f"{path}:5"]
    assert "4 columns" in errors[0].reason and "Q0" in errors[0].fix
    assert "not a number" in errors[1].reason


def test_a_tag_with_spaces_is_refused(tmp_path):
    with pytest.raises(ValueError, match="whitespace"):
        write_trec({}, tmp_path / "run.trec", tag="my run")
