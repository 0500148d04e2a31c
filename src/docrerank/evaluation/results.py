"""An evaluation written out: the paper-style table (markdown), per-query values, each system's run.

The table has the paper's shape: the first stage's row, then each reranker with its NDCG@5 difference from
the first stage and a significance mark (``*`` p < 0.05, ``**`` p < 0.01, paired randomization test).

``OUT/`` holds ``summary.json`` (means, every pairwise comparison), ``per_query.jsonl`` (one line per system
and query, every measure: the raw material of deltas and worst/best lists), ``runs/<system>.trec`` and
``table.md``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from docrerank.evaluation.metrics import LABELS, MEASURES, PRIMARY
from docrerank.evaluation.runner import Evaluation
from docrerank.pages.store import atomic_write_bytes
from docrerank.retrieval.runs import write_trec

__all__ = ["mark", "markdown", "run_path", "table_rows", "write_evaluation"]


def mark(p_value: float) -> str:
    return "**" if p_value < 0.01 else "*" if p_value < 0.05 else ""


def table_rows(evaluation: Evaluation) -> tuple[list[str], list[list[str]]]:
    """(header, rows): each system's means, and for rerankers the NDCG@5 delta against the first stage."""
    first = evaluation.systems[0].name
    against_first = {c.system: c for c in evaluation.comparisons if c.baseline == first}
    header = ["system", *(LABELS[m] for m in MEASURES), f"Δ {LABELS[PRIMARY]} vs {first}"]
    rows = []
    for system in evaluation.systems:
        means = system.means
        cells = [system.name, *(f"{means[m]:.3f}" for m in MEASURES)]
        comparison = against_first.get(system.name)
        cells.append(f"{comparison.delta:+.3f}{mark(comparison.p_value)}" if comparison else "")
        rows.append(cells)
    return header, rows


def markdown(evaluation: Evaluation) -> str:
    header, rows = table_rows(evaluation)
    lines = [
        f"**{evaluation.benchmark}**: {evaluation.queries} queries, rerankers re-score the first stage's top "
        f"{evaluation.k}; * p < 0.05, ** p < 0.01 (paired randomization test on per-query {LABELS[PRIMARY]})",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
        *("| " + " | ".join(row) + " |" for row in rows),
    ]
    between = [c for c in evaluation.comparisons if c.baseline != evaluation.systems[0].name]
    if between:
        lines += ["", f"Between rerankers ({LABELS[PRIMARY]}):", ""]
        lines += [f"- {c.system} vs {c.baseline}: {c.delta:+.3f}{mark(c.p_value)} (p {c.p_value:.3f})" for c in between]
    return "\n".join(lines) + "\n"


def _file_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "system"


def run_path(out: Path, system: str) -> Path:
    """Where ``write_evaluation`` puts a system's TREC run in the folder ``out``."""
    return out / "runs" / f"{_file_name(system)}.trec"


def write_evaluation(evaluation: Evaluation, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "runs").mkdir(exist_ok=True)
    lines = []
    for system in evaluation.systems:
        write_trec(system.run, run_path(out, system.name), tag=_file_name(system.name))
        for query_id in next(iter(system.values.values())):
            values = {m: system.values[m][query_id] for m in MEASURES}
            lines.append(json.dumps({"system": system.name, "query_id": query_id, **values}) + "\n")
    atomic_write_bytes(out / "per_query.jsonl", "".join(lines).encode())
    summary = {
        "benchmark": evaluation.benchmark,
        "source": evaluation.source,
        "k": evaluation.k,
        "queries": evaluation.queries,
        "systems": {s.name: s.means for s in evaluation.systems},
        "comparisons": [vars(c) for c in evaluation.comparisons],
    }
    atomic_write_bytes(out / "summary.json", (json.dumps(summary, indent=2) + "\n").encode())
    atomic_write_bytes(out / "table.md", markdown(evaluation).encode())
