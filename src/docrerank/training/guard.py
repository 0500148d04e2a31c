"""The guard: does the trained model rank better than what it would replace?

Three systems on the same queries and candidates: the first stage's order, the untrained start and the
trained model, compared on nDCG@5 with a paired randomization test. Two sources of queries: the held-out
documents' generated queries (always there when ``held_out`` > 0, but generated queries flatter a model
trained on their kind) and a benchmark of questions written by people (``--guard-benchmark``: its first
stage's top ``k``, as ``evaluate`` ranks them). A model below either baseline on any source is reported
loudly; with ``require_improvement`` the trainer does not save it as the model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from docrerank.evaluation.benchmark import Benchmark
from docrerank.evaluation.metrics import PRIMARY, mean, paired_p_value
from docrerank.evaluation.runner import evaluate
from docrerank.rerankers.base import Reranker
from docrerank.retrieval.runs import Run

__all__ = ["BenchmarkGuard", "GuardResult", "compare"]


class GuardResult(BaseModel):
    """nDCG@5 of the three systems on one source of queries, and the trained model's paired p-values."""

    source: str  # "held-out" or the benchmark's name
    first_stage_name: str
    queries: int
    first_stage: float
    start: float
    trained: float
    p_vs_first_stage: float
    p_vs_start: float

    @property
    def worse_than(self) -> list[str]:
        """The baselines the trained model ranks below (any amount: a model is not shipped on a tie)."""
        baselines = {f"the first stage ({self.first_stage_name})": self.first_stage, "the untrained start": self.start}
        return [name for name, value in baselines.items() if self.trained < value]

    @property
    def improves(self) -> bool:
        return self.trained > max(self.first_stage, self.start)


def compare(source: str, first_stage_name: str, first: dict, start: dict, trained: dict) -> GuardResult:
    """The guard's result from the per-query nDCG@5 (``{query id: value}``) of the three systems."""
    return GuardResult(
        source=source,
        first_stage_name=first_stage_name,
        queries=len(trained),
        first_stage=mean(first),
        start=mean(start),
        trained=mean(trained),
        p_vs_first_stage=paired_p_value(trained, first),
        p_vs_start=paired_p_value(trained, start),
    )


@dataclass
class BenchmarkGuard:
    """A benchmark's judged queries with their first stage's top ``k`` (fixed once): the candidates every
    reranker of the guard re-scores."""

    benchmark: Benchmark
    first_stage_name: str
    candidates: Run
    k: int

    @classmethod
    def build(cls, benchmark: Benchmark, first_stage: str, k: int = 10, model: str | None = None) -> BenchmarkGuard:
        from docrerank.retrieval import make_retriever

        retriever = make_retriever(first_stage, benchmark.corpus, model)
        queries = benchmark.judged_queries
        rankings = retriever.search([benchmark.queries[q] for q in queries], k)
        return cls(benchmark, first_stage, dict(zip(queries, rankings, strict=True)), k)

    def first_stage(self) -> dict[str, float]:
        """Per-query nDCG@5 of the first stage's order."""
        return self._evaluate({})[0]

    def __call__(self, reranker: Reranker) -> dict[str, float]:
        """Per-query nDCG@5 of ``reranker`` over the candidates."""
        return self._evaluate({"reranker": (reranker, "guard")})[-1]

    def _evaluate(self, rerankers: dict[str, Any]) -> list[dict[str, float]]:
        result = evaluate(self.benchmark, self.candidates, rerankers, self.k, self.first_stage_name)
        return [system.values[PRIMARY] for system in result.systems]
