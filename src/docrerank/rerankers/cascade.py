"""A cascade: a fast student scores every candidate, a slow teacher re-scores the student's top ``top``.

The student is typically a cross-encoder trained on the teacher's scores (``docrerank label``, then
``docrerank train --targets teacher``), the teacher the zero-shot LLM it learnt from: the teacher's judgement
where it matters (the head of the ranking) at the cost of ``top`` teacher calls a query instead of all.

For each candidate set (in ``score``: the pairs with the same query; in ``score_sets``: the pairs of one set
with the same query), in the given order:

1. the student scores every candidate;
2. the student's ``top`` best (ties keep the given order) go to the teacher; the teacher scores the heads of
   every set of the call together, so an LLM backend can order them by page prefix;
3. the final order is those ``top`` in the teacher's order (teacher ties keep the student's order), then the
   rest in the student's order.

Scores are that order written as numbers: of a set's ``n`` candidates, the one at position ``i`` (from 0)
scores ``n - i``. They fall strictly along the final order, so ``Reranker.rank`` (a stable sort by score)
gives exactly that order; they compare only within a set and say nothing beyond the order. A pair the
teacher could not score falls to the end of the head. A pair the student
could not score (a page without text, ...) is not a candidate: it is left out of the set's order and gets
``UNSCORED`` with the student's reason (``score_results``), so it ranks last.

Saved (``save``), the folder holds the student in ``student/``, and ``reranker.json`` points at it and holds
the teacher: an LLM teacher's backend config and prompt settings inline (it has no weights), any other
teacher saved in ``teacher/``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from docrerank.errors import DocrerankError
from docrerank.pages.content import PageLike
from docrerank.rerankers.base import PairScore, Reranker, split_sets

__all__ = ["CascadeReranker", "load_cascade"]

log = logging.getLogger(__name__)

STUDENT = "student"
TEACHER = "teacher"


def _descending(score: float) -> float:
    """A sort key that puts higher scores first and nan last."""
    return math.inf if math.isnan(score) else -score


class CascadeReranker(Reranker):
    kind = "cascade"
    pairwise = False

    def __init__(self, student: Reranker, teacher: Reranker, top: int = 5):
        if top < 1:
            raise DocrerankError(f"the cascade's top must be at least 1 (the pages the teacher re-scores), got {top}")
        self.student, self.teacher, self.top = student, teacher, top
        self.uses = student.uses | teacher.uses

    @classmethod
    def from_saved(
        cls, settings: dict[str, Any], folder: Path, where: str, *, allow_remote: bool = False
    ) -> CascadeReranker:
        return load_cascade(settings, folder, where, allow_remote=allow_remote)

    def settings(self) -> dict[str, Any]:
        teacher: str | dict[str, Any] = TEACHER
        if self.teacher.kind == "llm":  # no weights: its backend config is enough
            teacher = {"kind": self.teacher.kind, **self.teacher.settings()}
        return {"student": STUDENT, "teacher": teacher, "top": self.top}

    def save(self, path: str | Path) -> None:
        folder = Path(path)
        self.student.save(folder / STUDENT)
        if self.teacher.kind != "llm":
            self.teacher.save(folder / TEACHER)
        super().save(folder)  # reranker.json last: a complete folder

    def score(self, pairs: Sequence[tuple[str, PageLike]]) -> list[float]:
        """Order scores (see the module docstring); the pairs with the same query are one candidate set."""
        return self.score_sets([pairs])[0]

    def score_results(self, pairs: Sequence[tuple[str, PageLike]]) -> list[PairScore]:
        return self.score_set_results([pairs])[0]

    def score_sets(self, sets: Sequence[Sequence[tuple[str, PageLike]]]) -> list[list[float]]:
        """Order scores of several candidate sets (several requests to a server) in one student call and one
        teacher call; within a set, the pairs with the same query are ranked together."""
        return [[r.score for r in results] for results in self.score_set_results(sets)]

    def score_set_results(self, sets: Sequence[Sequence[tuple[str, PageLike]]]) -> list[list[PairScore]]:
        pairs = [pair for candidates in sets for pair in candidates]
        student = self.student.score_results(pairs) if pairs else []
        orders, start = [], 0
        for candidates in sets:
            by_query: dict[str, list[int]] = {}
            for index, (query, _) in enumerate(candidates, start):
                if student[index].ok:
                    by_query.setdefault(query, []).append(index)
            orders += [sorted(indexes, key=lambda i: _descending(student[i].score)) for indexes in by_query.values()]
            start += len(candidates)
        heads = [i for order in orders for i in order[: self.top]]
        judged = self.teacher.score_results([pairs[i] for i in heads]) if heads else []
        for result in judged:
            if not result.ok:
                log.warning("the cascade's teacher could not score a page (it goes last of the head): %s", result.error)
        teacher = dict(zip(heads, (float(r.score) for r in judged), strict=True))
        results = list(student)  # the student's failures stay as they are
        for order in orders:
            final = sorted(order[: self.top], key=lambda i: _descending(teacher[i])) + order[self.top :]
            for position, index in enumerate(final):
                results[index] = PairScore(float(len(final) - position))
        return split_sets(results, sets)


def load_cascade(settings: dict[str, Any], folder: Path, where: str, *, allow_remote: bool = False) -> CascadeReranker:
    """The cascade a ``reranker.json`` describes: ``student`` a folder (relative to ``folder``), ``teacher`` a
    folder or an inline reranker document (an LLM teacher's backend config), ``top``. ``allow_remote``: as
    for ``Reranker.load``, for the student and the teacher."""
    try:
        student, teacher, top = settings["student"], settings["teacher"], int(settings["top"])
    except (KeyError, TypeError, ValueError):
        raise DocrerankError(f"{where}: a cascade needs student (a folder), teacher and top") from None
    teacher_reranker = (
        Reranker.from_settings(teacher, folder, where, allow_remote=allow_remote)
        if isinstance(teacher, dict)
        else Reranker.load(folder / teacher, allow_remote=allow_remote)
    )
    return CascadeReranker(Reranker.load(folder / student, allow_remote=allow_remote), teacher_reranker, top)
