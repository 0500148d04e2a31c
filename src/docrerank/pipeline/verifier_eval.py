"""How good is the verifier? Its verdicts on labeled (page, query) pairs, measured.

What matters most is the precision of "unanswerable": a negative the verifier accepts although the page
does answer it is a false negative in the training data. So the report leads with the precision and recall
of *accepted negatives* (every prompt says no and the evidence check does not object), then gives accuracy,
a confusion table of the combined verdict, the prompts' agreement, ROC AUC and a reliability table (and
plot) of the probabilities (both by scikit-learn), and the threshold on P(yes) that reaches a target
precision with the most recall.

The functions take plain lists (labels, per-prompt probabilities, vetoes), so the same measures serve
``docrerank evaluate-verifier`` and the benchmark's comparisons of verifier variants.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from docrerank.errors import import_optional

__all__ = [
    "calibration",
    "evaluate_verifier",
    "negative_scores",
    "precision_recall",
    "roc_auc",
    "threshold_for_precision",
    "write_calibration_plot",
]

VERDICTS = ("answerable", "undecided", "unanswerable")


def roc_auc(positive: Sequence[bool], score: Sequence[float]) -> float | None:
    """P(score of a random positive > score of a random negative), ties half (scikit-learn's ROC AUC); None
    without both classes."""
    from sklearn.metrics import roc_auc_score

    labels = np.asarray(positive, dtype=bool)
    if len(labels) != len(score):
        raise ValueError(f"{len(labels)} labels but {len(score)} scores")
    if labels.all() or not labels.any():
        return None
    return float(roc_auc_score(labels, np.asarray(score, dtype=float)))


def precision_recall(truth: Sequence[bool], predicted: Sequence[bool]) -> dict[str, Any]:
    """Precision, recall and F1 of ``predicted`` for the class ``truth`` marks; None where undefined."""
    tp = sum(t and p for t, p in zip(truth, predicted, strict=True))
    n_pred, n_true = sum(predicted), sum(truth)
    precision = tp / n_pred if n_pred else None
    recall = tp / n_true if n_true else None
    f1 = 2 * precision * recall / (precision + recall) if precision and recall else None
    return {"precision": precision, "recall": recall, "f1": f1, "predicted": n_pred, "true": n_true, "hits": tp}


def threshold_for_precision(
    unanswerable: Sequence[bool], p_yes_max: Sequence[float], target: float, vetoed: Sequence[bool] | None = None
) -> dict[str, Any] | None:
    """The threshold t (a negative is accepted when every prompt's P(yes) < t) with the most recall among
    those whose accepted-negative precision reaches ``target``; None when none does."""
    vetoed = vetoed or [False] * len(unanswerable)
    best = None
    for t in sorted(set(p_yes_max)) + [1.0]:
        accepted = [p < t and not v for p, v in zip(p_yes_max, vetoed, strict=True)]
        scores = precision_recall(unanswerable, accepted)
        if scores["precision"] is not None and scores["precision"] >= target:
            if best is None or scores["recall"] > best["recall"]:
                best = {"threshold": float(t), **scores}
    return best


def calibration(answerable: Sequence[bool], p_yes: Sequence[float], bins: int = 10) -> dict[str, Any]:
    """Reliability table: per probability bin (``bins`` equal widths; a probability on an edge falls in the
    lower bin, as in scikit-learn), the mean P(yes) and the share truly answerable (scikit-learn's
    ``calibration_curve``); and the expected calibration error (ECE) over the bins."""
    from sklearn.calibration import calibration_curve

    p = np.asarray(p_yes, dtype=float)
    y = np.asarray(answerable, dtype=int)
    if not len(p):
        return {"bins": [], "ece": 0.0}
    observed, mean_p = calibration_curve(y, p, n_bins=bins, strategy="uniform", pos_label=1)
    index = np.searchsorted(np.linspace(0.0, 1.0, bins + 1)[1:-1], p)  # calibration_curve's binning
    counts = np.bincount(index, minlength=bins)
    filled = np.flatnonzero(counts)
    if len(filled) != len(observed):  # a scikit-learn that bins otherwise: the counts would be misattributed
        raise RuntimeError(f"scikit-learn's calibration_curve gave {len(observed)} bins, not {len(filled)}")
    rows = [
        {"bin": [b / bins, (b + 1) / bins], "n": int(counts[b]), "mean_p": float(m), "observed": float(o)}
        for b, m, o in zip(filled, mean_p, observed, strict=True)
    ]
    ece = float(sum(counts[b] / len(p) * abs(m - o) for b, m, o in zip(filled, mean_p, observed, strict=True)))
    return {"bins": rows, "ece": ece}


def negative_scores(rows: Sequence[dict[str, Any]]) -> tuple[list[bool], list[float], list[bool]]:
    """What a threshold on accepted negatives works from, per result row: the label (unanswerable), the
    highest P(yes) of the prompts (a negative is accepted when it is below the threshold), the evidence veto."""
    unanswerable = [not r["answerable"] for r in rows]
    p_yes_max = [max(p["p_yes"] for p in r["prompts"]) for r in rows]
    vetoed = [bool((r.get("evidence") or {}).get("answers")) for r in rows]
    return unanswerable, p_yes_max, vetoed


def evaluate_verifier(results: Sequence[dict[str, Any]], target_precision: float = 0.95) -> dict[str, Any]:
    """The report of item 2 of the issue, from ``docrerank verify`` result rows that carry a label.

    Each row needs ``answerable`` (the label), ``prompts`` (``[{template, p_yes}]``), ``verdict``,
    ``accepted`` (as a negative) and optionally ``evidence`` and ``kind``. Rows without a label or with
    verifier errors are counted and left out.
    """
    usable = [r for r in results if r.get("answerable") is not None and not r.get("errors")]
    truth_unans, p_max, vetoed = negative_scores(usable)
    truth_ans = [not t for t in truth_unans]
    accepted = [bool(r["accepted"]) for r in usable]
    p_yes = [[p["p_yes"] for p in r["prompts"]] for r in usable]
    templates = [p["template"] for p in usable[0]["prompts"]] if usable else []

    confusion = {truth: Counter() for truth in ("answerable", "unanswerable")}
    for row in usable:
        confusion["answerable" if row["answerable"] else "unanswerable"][row["verdict"]] += 1
    by_kind: dict[str, list[dict]] = defaultdict(list)
    for row in usable:
        by_kind[row.get("kind") or ("answerable" if row["answerable"] else "unanswerable")].append(row)

    per_prompt = {
        name: {
            "roc_auc": roc_auc(truth_ans, [ps[i] for ps in p_yes]),
            "calibration": calibration(truth_ans, [ps[i] for ps in p_yes]),
        }
        for i, name in enumerate(templates)
    }
    return {
        "pairs": len(results),
        "evaluated": len(usable),
        "left_out": len(results) - len(usable),
        "answerable": sum(truth_ans),
        "unanswerable": sum(truth_unans),
        "accepted_negatives": precision_recall(truth_unans, accepted),
        "accuracy": sum(a == t for a, t in zip(accepted, truth_unans, strict=True)) / len(usable) if usable else None,
        "answerable_verdict": precision_recall(truth_ans, [r["verdict"] == "answerable" for r in usable]),
        "confusion": {truth: {v: counts[v] for v in VERDICTS} for truth, counts in confusion.items()},
        "prompt_agreement": sum(bool(r["agree"]) for r in usable) / len(usable) if usable else None,
        "roc_auc": roc_auc(truth_ans, p_max),
        "evidence_vetoes": {
            "vetoed": sum(vetoed),
            "of_them_answerable": sum(v and a for v, a in zip(vetoed, truth_ans, strict=True)),
        },
        "per_prompt": per_prompt,
        "calibration": calibration(truth_ans, [sum(ps) / len(ps) for ps in p_yes]),
        "target_precision": target_precision,
        "threshold_for_target": threshold_for_precision(truth_unans, p_max, target_precision, vetoed),
        "by_kind": {
            kind: {
                "n": len(rows),
                "answerable": bool(rows[0]["answerable"]),
                "accepted_as_negative": sum(bool(r["accepted"]) for r in rows) / len(rows),
            }
            for kind, rows in sorted(by_kind.items())
        },
    }


def write_calibration_plot(report: dict[str, Any], path: Path) -> Path:
    """A reliability diagram (observed share answerable against mean P(yes), per prompt and averaged)."""
    import_optional("matplotlib", "report")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", label="perfectly calibrated")
    curves = {name: p["calibration"] for name, p in report["per_prompt"].items()}
    curves["mean of prompts"] = report["calibration"]
    for name, table in curves.items():
        bins = table["bins"]
        ax.plot(
            [b["mean_p"] for b in bins],
            [b["observed"] for b in bins],
            marker="o",
            label=f"{name} (ECE {table['ece']:.2f})",
        )
    ax.set_xlabel("predicted P(the page answers)")
    ax.set_ylabel("share of pairs the page answers")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.legend(loc="upper left", fontsize=8)
    ax.set_title(f"verifier reliability ({report['evaluated']} labeled pairs)")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
