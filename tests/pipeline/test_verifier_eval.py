"""The verifier's measures on hand-computed examples."""

from __future__ import annotations

import random
import tracemalloc

import numpy as np
import pytest

from docrerank.pipeline.verifier_eval import (
    calibration,
    evaluate_verifier,
    precision_recall,
    roc_auc,
    threshold_for_precision,
)


def test_roc_auc_counts_pairs_ranked_right_and_ties_as_half():
    assert roc_auc([True, True, False, False], [0.9, 0.8, 0.2, 0.1]) == 1.0
    assert roc_auc([True, True, False, False], [0.1, 0.2, 0.8, 0.9]) == 0.0
    # pairs (pos, neg): (0.9,0.5) right, (0.9,0.9) tie, (0.3,0.5) wrong, (0.3,0.9) wrong -> 1.5/4
    assert roc_auc([True, False, True, False], [0.9, 0.5, 0.3, 0.9]) == pytest.approx(0.375)
    assert roc_auc([True, True], [0.1, 0.2]) is None


def test_precision_recall_of_a_class():
    scores = precision_recall([True, True, False, True], [True, False, True, True])
    assert scores["precision"] == pytest.approx(2 / 3)
    assert scores["recall"] == pytest.approx(2 / 3)
    assert scores["predicted"] == 3 and scores["hits"] == 2
    assert precision_recall([True], [False])["precision"] is None


def test_threshold_for_precision_takes_the_most_recall_that_reaches_the_target():
    # accepted when max P(yes) < t; unanswerable pairs have low P(yes) except one, an answerable pair sits at 0.3
    unanswerable = [True, True, True, False, True, False]
    p_max = [0.05, 0.10, 0.20, 0.30, 0.60, 0.90]
    best = threshold_for_precision(unanswerable, p_max, target=1.0)
    assert best["threshold"] == pytest.approx(0.30)  # accepts 0.05, 0.10, 0.20: precision 1, recall 3/4
    assert best["precision"] == 1.0 and best["recall"] == pytest.approx(0.75)
    looser = threshold_for_precision(unanswerable, p_max, target=0.8)
    assert looser["recall"] == 1.0 and looser["precision"] == pytest.approx(0.8)
    # a veto (the evidence check) removes a pair from what is accepted whatever the threshold
    vetoed = [False, False, False, True, False, False]
    assert threshold_for_precision(unanswerable, p_max, 1.0, vetoed)["recall"] == 1.0


def test_threshold_for_precision_is_none_when_no_threshold_reaches_it():
    assert threshold_for_precision([False, True], [0.01, 0.5], target=0.95) is None


def test_calibration_bins_and_expected_error():
    table = calibration([True, False, True, True], [0.05, 0.05, 0.95, 0.95], bins=10)
    assert [b["n"] for b in table["bins"]] == [2, 2]
    assert table["bins"][0]["observed"] == 0.5 and table["bins"][1]["observed"] == 1.0
    assert table["ece"] == pytest.approx(0.5 * 0.45 + 0.5 * 0.05)


def _row(answerable, p_yes, verdict, accepted, kind, evidence=None):
    return {
        "answerable": answerable,
        "prompts": [{"template": "verify_a", "p_yes": p_yes[0]}, {"template": "verify_b", "p_yes": p_yes[1]}],
        "verdict": verdict,
        "agree": verdict != "undecided",
        "accepted": accepted,
        "kind": kind,
        "evidence": evidence,
    }


def test_evaluate_verifier_report_from_result_rows():
    rows = [
        _row(True, [0.9, 0.8], "answerable", False, "positive"),
        _row(True, [0.2, 0.1], "unanswerable", True, "paraphrase"),  # a wrongly accepted negative
        _row(False, [0.1, 0.2], "unanswerable", True, "one_property"),
        _row(False, [0.1, 0.05], "unanswerable", False, "value_elsewhere", {"answers": True}),  # vetoed
        _row(False, [0.7, 0.3], "undecided", False, "one_property"),
        {**_row(False, [0.5, 0.5], "undecided", False, "one_property"), "errors": ["timeout"]},
    ]
    report = evaluate_verifier(rows, target_precision=0.95)
    assert report["pairs"] == 6 and report["evaluated"] == 5 and report["left_out"] == 1
    assert report["accepted_negatives"]["precision"] == 0.5
    assert report["accepted_negatives"]["recall"] == pytest.approx(1 / 3)
    assert report["accuracy"] == pytest.approx(2 / 5)
    assert report["confusion"]["answerable"] == {"answerable": 1, "undecided": 0, "unanswerable": 1}
    assert report["confusion"]["unanswerable"] == {"answerable": 0, "undecided": 1, "unanswerable": 2}
    assert report["prompt_agreement"] == pytest.approx(4 / 5)
    assert report["evidence_vetoes"] == {"vetoed": 1, "of_them_answerable": 0}
    assert report["by_kind"]["paraphrase"]["accepted_as_negative"] == 1.0
    # max P(yes): answerable 0.9, 0.2; unanswerable 0.2, 0.1, 0.7 -> pairs ranked right: 3 + 1 + 0.5 ties
    assert report["roc_auc"] == pytest.approx((3 + 1.5) / 6)
    # the only negative below the answerable pair's 0.2 is vetoed by the evidence check: no threshold is clean
    assert report["threshold_for_target"] is None


def _mann_whitney(positive, score):
    """The pairwise definition, computed pair by pair: what the ROC AUC must equal."""
    pos = [s for s, y in zip(score, positive, strict=True) if y]
    neg = [s for s, y in zip(score, positive, strict=True) if not y]
    return sum((p > n) + 0.5 * (p == n) for p in pos for n in neg) / (len(pos) * len(neg))


def test_roc_auc_equals_the_pairwise_definition_with_many_ties():
    rng = random.Random(7)
    labels = [rng.random() < 0.4 for _ in range(300)]
    scores = [round(rng.random() * (0.6 + 0.4 * y), 1) for y in labels]  # one decimal: many ties
    assert roc_auc(labels, scores) == pytest.approx(_mann_whitney(labels, scores), abs=1e-12)


def test_roc_auc_of_many_pairs_takes_memory_linear_in_them():
    """An n x n comparison matrix of 4,000 scores takes 16 MB a matrix; the rank statistic a few arrays."""
    rng = np.random.default_rng(0)
    labels = rng.random(4000) < 0.5
    scores = rng.random(4000) + labels * 0.2
    roc_auc(labels.tolist(), scores.tolist())  # the first call imports scikit-learn: not measured
    tracemalloc.start()
    try:
        value = roc_auc(labels.tolist(), scores.tolist())
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert 0.6 < value < 0.8
    assert peak < 4_000_000, f"{peak / 1e6:.1f} MB"


def test_calibration_matches_the_bins_computed_by_hand():
    rng = random.Random(3)
    p = [rng.random() for _ in range(500)] + [0.0, 1.0]
    y = [rng.random() < q for q in p]
    table = calibration(y, p, bins=5)
    assert sum(b["n"] for b in table["bins"]) == len(p)
    ece = 0.0
    for row in table["bins"]:
        low, high = row["bin"]
        members = [i for i, q in enumerate(p) if (low < q <= high) or (low == 0.0 and q == 0.0)]
        assert row["n"] == len(members)
        assert row["mean_p"] == pytest.approx(sum(p[i] for i in members) / len(members))
        assert row["observed"] == pytest.approx(sum(y[i] for i in members) / len(members))
        ece += len(members) / len(p) * abs(row["mean_p"] - row["observed"])
    assert table["ece"] == pytest.approx(ece)
    assert calibration([], []) == {"bins": [], "ece": 0.0}
    assert calibration([True, True], [0.9, 0.8])["bins"][0]["observed"] == 1.0  # one class only
