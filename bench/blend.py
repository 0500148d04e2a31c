"""Blending the teacher with its student over the top 3: does the student's score add to the teacher's order?

    python bench/decision.py ... --teacher-scores cascade --cascade-students "..."   # the scores, cached
    python bench/blend.py --decision runs/decision120 --students runs/quality-reworded120

The default chain puts the student's top 3 in the teacher's order (`CascadeReranker`). A common alternative is
to blend the two scores there: within a question's top 3, each z-scored, the student's plus W times the
teacher's logit (W = 0 is the student alone, W infinite the cascade). This reads the scores a bench/decision.py
run cached (every student's on every candidate, the teacher's on each student's top 3, so nothing is scored
again) and prints, for each trained fusion of ``--students`` and each W, NDCG@5 on the 94 rephrased questions
against EmbeddingGemma alone (its committed top 10; paired randomization test). An exploration on the test
itself, not a choice.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
from pathlib import Path

from decision import LLMS, TEACHER, students, zero_shot  # bench/decision.py: scripts run as `python bench/NAME.py`
from docrerank.evaluation import PRIMARY, ScoreCache, mean, paired_p_value, per_query
from docrerank.evaluation.loaders import load_store
from docrerank.retrieval.runs import read_trec
from quality import DATA, ROOT
from seeds import CANDIDATES

WEIGHTS = (0.0, 0.5, 1.0, 2.0, 4.0, math.inf)


def zscores(values: list[float]) -> list[float]:
    spread = statistics.pstdev(values)
    return [(v - statistics.mean(values)) / spread if spread else 0.0 for v in values]


def best_first(scores: dict[str, float]) -> list[str]:
    """Pages by score, best first (ties as the cache lists them), as the cascade's student orders them."""
    return sorted(scores, key=lambda page: -scores[page])


def blended(student: dict, teacher: dict, questions: dict[str, str], weight: float, top: int) -> dict:
    """Each question's candidates in the student's order, its top ``top`` re-sorted by the blend."""
    run = {}
    for text, query_id in questions.items():
        order = best_first(student[text])
        head = order[:top]
        logits = [math.log(p / (1 - p)) for p in (min(max(teacher[text][page], 1e-6), 1 - 1e-6) for page in head)]
        if math.isinf(weight):
            blend = logits
        else:
            blend = [
                s + weight * t for s, t in zip(zscores([student[text][p] for p in head]), zscores(logits), strict=True)
            ]
        head = [page for _, page in sorted(zip(blend, head, strict=True), key=lambda pair: -pair[0])]
        final = head + order[top:]
        run[query_id] = [(page, float(len(final) - rank)) for rank, page in enumerate(final)]
    return run


def by_query(scores: dict[tuple[str, str], float]) -> dict[str, dict[str, float]]:
    grouped: dict[str, dict[str, float]] = {}
    for (text, page), score in scores.items():
        grouped.setdefault(text, {})[page] = score
    return grouped


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--decision", type=Path, default=ROOT / "runs" / "decision120", help="a decision.py --out")
    parser.add_argument(  # the cache names a student by its folder as decision.py was given it
        "--students", type=Path, default=Path("runs/quality-reworded120"), help="as given to decision.py"
    )
    parser.add_argument("--top", type=int, default=3)
    args = parser.parse_args()
    cache = ScoreCache(args.decision / "scores.sqlite")
    benchmark = load_store(
        args.decision / "pages", args.decision / "queries-rephrased.jsonl", DATA / "quality-qrels.trec"
    )
    questions = {benchmark.queries[q]: q for q in benchmark.judged_queries}
    ids, qrels = list(questions.values()), benchmark.qrels
    teacher_key = json.dumps(zero_shot(LLMS["1.5B"], "focused").settings(), sort_keys=True)
    teacher = by_query(cache.scores(f"{TEACHER}:{teacher_key}"))
    systems = {name: by_query(cache.scores(f"{name}:{key}")) for name, (_, key) in students(args.students).items()}
    start = per_query(read_trec(CANDIDATES)[0], qrels, ids, (PRIMARY,))[PRIMARY]
    print(f"{len(ids)} rephrased questions; EmbeddingGemma alone {mean(start):.3f} NDCG@5; Δ (p) at each W:")
    for name, student in systems.items():
        heads = [(t, p) for t in questions if t in student for p in best_first(student[t])[: args.top]]
        if len(heads) < args.top * len(questions) or any(p not in teacher.get(t, {}) for t, p in heads):
            print(f"{name}: left out, no cached scores of its cascade (its decision.py run, --students as given there)")
            continue
        cells = []
        for weight in WEIGHTS:
            values = per_query(blended(student, teacher, questions, weight, args.top), qrels, ids, (PRIMARY,))[PRIMARY]
            cells.append(f"W={weight:g}: {mean(values) - mean(start):+.3f} ({paired_p_value(values, start):.3f})")
        print(f"{name}: " + ", ".join(cells))


if __name__ == "__main__":
    main()
