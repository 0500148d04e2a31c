"""What a run costs: every stage's requests, retries, cache hits, tokens and seconds, summed over its shards and
every attempt (each shard's completion marker keeps its own, so resumes and executors add up), priced.

Prices (the config's ``prices``, by backend name): money per million prompt and decoded tokens for an API;
GPUs held and money per GPU-hour for a self-hosted server or an in-process model, whose GPU-hours come from the
stage's seconds. A ``Budget`` (tokens, money) stops a run at the next shard boundary: resumable later.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from docrerank.errors import DocrerankError

if TYPE_CHECKING:
    from docrerank.pipeline.config import PipelineConfig
    from docrerank.pipeline.rundir import RunDir

__all__ = ["Budget", "Price", "Spending", "run_costs", "stage_backend"]


class Price(BaseModel):
    """A backend's prices: per million tokens (an API), or GPUs held and a GPU-hour's price (self-hosted)."""

    model_config = ConfigDict(extra="forbid")

    input_per_million: float = Field(0.0, ge=0, description="money per million prompt tokens")
    output_per_million: float = Field(0.0, ge=0, description="money per million decoded tokens")
    gpus: float = Field(0.0, ge=0, description="GPUs the backend holds while a stage runs (self-hosted)")
    gpu_hour: float = Field(0.0, ge=0, description="money per GPU-hour")

    def money(self, cost: dict[str, float]) -> float:
        tokens = cost.get("prompt_tokens", 0) * self.input_per_million + cost.get("completion_tokens", 0) * (
            self.output_per_million
        )
        return tokens / 1e6 + self.gpu_hours(cost) * self.gpu_hour

    def gpu_hours(self, cost: dict[str, float]) -> float:
        return self.gpus * cost.get("seconds", 0) / 3600


def stage_backend(config: PipelineConfig, stage: str) -> str | None:
    """The backend a stage sends its requests to (negative candidates: the free-form generator's)."""
    if stage == "negative_candidates":
        return config.negative_candidates.freeform.backend
    return getattr(getattr(config, stage, None), "backend", None)


def _priced(config: PipelineConfig, stage: str, cost: dict[str, float]) -> dict[str, float]:
    price = config.prices.get(stage_backend(config, stage) or "", Price())
    tokens = cost.get("prompt_tokens", 0) + cost.get("completion_tokens", 0)
    return {"tokens": tokens, "money": round(price.money(cost), 6), "gpu_hours": round(price.gpu_hours(cost), 6)}


def run_costs(run: RunDir, config: PipelineConfig, stages: list[str]) -> dict[str, Any]:
    """Each stage's cost over every finished shard (markers), per page, priced; and the run's totals."""
    shard_pages = run.shard_pages()
    result: dict[str, Any] = {"stages": {}, "total": {}}
    total: dict[str, float] = {}
    for stage in stages:
        summed: dict[str, float] = {}
        pages = 0
        for shard in run.shards(stage):
            cost = run.cost(stage, shard)
            if cost:
                pages += len(shard_pages.get(shard, []))
                for name, value in cost.items():
                    summed[name] = summed.get(name, 0.0) + value
        if not summed:
            continue
        summed |= _priced(config, stage, summed)
        for name, value in summed.items():
            total[name] = total.get(name, 0.0) + value
        per_page = {name: round(value / pages, 4) for name, value in summed.items()} if pages else {}
        result["stages"][stage] = {name: round(value, 4) for name, value in summed.items()} | {
            "pages": pages,
            "per_page": per_page,
        }
    result["total"] = {name: round(value, 4) for name, value in total.items()}
    return result


@dataclass
class Budget:
    """The most a run may spend, all its shards and resumes together: tokens (prompt + decoded), money."""

    tokens: float | None = None
    money: float | None = None

    def __post_init__(self) -> None:
        if (self.tokens is not None and self.tokens <= 0) or (self.money is not None and self.money <= 0):
            raise DocrerankError("a budget is a positive number of tokens or of money")


class Spending:
    """A run's spend so far against its budget: what its markers hold, then each shard as it finishes."""

    def __init__(self, budget: Budget, config: PipelineConfig, run: RunDir, stages: list[str]):
        self.budget, self.config = budget, config
        totals = run_costs(run, config, stages)["total"]
        self.tokens, self.money = totals.get("tokens", 0.0), totals.get("money", 0.0)

    def add(self, profile: dict[str, dict[str, float]]) -> None:
        """A finished shard's costs (stage -> counters)."""
        for stage, cost in profile.items():
            priced = _priced(self.config, stage, cost)
            self.tokens += priced["tokens"]
            self.money += priced["money"]

    def exhausted(self) -> bool:
        budget = self.budget
        return (budget.tokens is not None and self.tokens >= budget.tokens) or (
            budget.money is not None and self.money >= budget.money
        )

    def describe(self) -> str:
        spent = [f"{self.tokens:,.0f} tokens"] + ([f"{self.money:.4f} in money"] if self.budget.money else [])
        limits = []
        if self.budget.tokens is not None:
            limits.append(f"{self.budget.tokens:,.0f} tokens")
        if self.budget.money is not None:
            limits.append(f"{self.budget.money:g} in money")
        return f"spent {', '.join(spent)} of a budget of {' and '.join(limits)}"
