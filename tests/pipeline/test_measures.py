"""Hardness and diversity of a run's negatives (``docrerank stats``), with the real bundled MiniLM."""

from __future__ import annotations

import json

import pytest

from docrerank.pipeline.measures import distinct_n, quality_measures
from tests.helpers import invoke_cli, run_cli
from tests.pipeline import make_negative, make_positive
from tests.pipeline.test_export import hand_run, store  # noqa: F401  (fixtures)


def test_distinct_n_counts_repeated_words_and_bigrams():
    assert distinct_n(["a b c", "a b d"], 1) == round(4 / 6, 4)
    assert distinct_n(["a b c", "a b d"], 2) == round(3 / 4, 4)
    assert distinct_n(["What is it?"], 5) is None


def test_an_edited_negative_is_harder_than_an_off_topic_one():
    positive = make_positive("What was the unemployment rate in Germany in 1991?")
    edited = make_negative(
        positive,
        "What was the unemployment rate in France in 1991?",
        generator="llm:controlled",
        property="named entity",
    )
    drifted = make_negative(positive, "Which R function plots a time series?", generator="llm:freeform")
    result = quality_measures([positive, edited, drifted])
    by = result["hardness"]
    assert by["llm:controlled:named entity"]["lexical"]["mean"] == pytest.approx(
        4 / 6, abs=1e-3
    )  # one of 5 content words changed
    assert by["llm:controlled:named entity"]["embedding"]["mean"] > by["llm:freeform"]["embedding"]["mean"] + 0.3
    assert by["llm:controlled:named entity"]["char"]["mean"] > 0.8 > by["llm:freeform"]["char"]["mean"]
    assert by["all"]["lexical"]["n"] == 2
    diversity = result["diversity"]
    assert diversity["positives_with_2_or_more"] == 1
    assert 0.0 < diversity["pairwise_embedding"]["mean"] < by["llm:controlled:named entity"]["embedding"]["mean"]


def test_without_the_embedder_only_lexical_measures_are_made():
    positive = make_positive("What was the unemployment rate in Germany in 1991?")
    negative = make_negative(positive, "What was the unemployment rate in Germany in 1992?")
    result = quality_measures([positive, negative], embedder=None)
    assert set(result["hardness"]["all"]) == {"lexical", "char"}


def test_stats_command_adds_quality_to_the_runs_stats(hand_run):  # noqa: F811
    run_dir, records = hand_run
    result = invoke_cli("stats", run_dir)
    assert result.exit_code == 0, result.stdout
    stats = json.loads((run_dir / "stats.json").read_text())
    assert stats["quality"]["negatives"] == 3 and stats["quality"]["positives"] == 3
    assert stats["negatives_by_property"]["llm:controlled:name"]["selected"] == 1
    assert "hardness of 3 negatives" in result.stdout and "diversity over 1 positives" in result.stdout


def test_stats_of_a_folder_that_is_no_run_says_how_to_make_one(tmp_path):
    result = run_cli("stats", tmp_path / "nothing")
    assert result.exit_code == 2 and "is not a run directory" in result.stderr
    assert not (tmp_path / "nothing").exists()
