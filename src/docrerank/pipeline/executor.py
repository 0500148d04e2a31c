"""Executors: what runs a pipeline's stages over shards of pages, and where.

``run_shard`` is the unit of work any executor runs: every stage of one shard in order, each stage resumed
from its finished files or run and written with its completion marker. ``LocalExecutor`` runs the shards one
after another in this process. Executors report progress through a callback (stage, shards done, shards in
all) and never print: the CLI draws the bars.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from docrerank.backends import Backend
from docrerank.pages import Page
from docrerank.pipeline.context import StageContext
from docrerank.pipeline.costs import Spending
from docrerank.pipeline.records import QueryRecord
from docrerank.pipeline.stage import Pipeline

__all__ = [
    "COUNTERS",
    "add_costs",
    "Executor",
    "LocalExecutor",
    "ProgressCallback",
    "ShardCount",
    "ShardOutcome",
    "run_shard",
]

# stage name, shards done, shards in all: called once per stage with 0 before any work, then after each shard
ProgressCallback = Callable[[str, int, int], None]

COUNTERS = ("requests_sent", "cache_hits", "retries", "prompt_tokens", "completion_tokens", "busy_s")


@dataclass
class ShardOutcome:
    """What running one shard did: whether every stage was resumed from disk, failures, and each stage's cost."""

    shard: str
    pages: int
    resumed: bool = True
    failed: int = 0  # items whose requests got no answer; a rerun retries them
    profile: dict[str, dict[str, float]] = field(default_factory=dict)  # stage -> seconds and backend counters


def add_costs(total: dict[str, float], cost: dict[str, float]) -> dict[str, float]:
    """Two costs summed, counter by counter."""
    return {name: round(total.get(name, 0.0) + cost.get(name, 0.0), 4) for name in {*total, *cost}}


def _counters(backends: dict[str, Backend]) -> dict[str, float]:
    unique = {id(b): b for b in backends.values()}.values()  # names may share one backend
    return {name: sum(getattr(b.stats, name) for b in unique) for name in COUNTERS}


def run_shard(
    pipeline: Pipeline,
    ctx: StageContext,
    shard: str,
    pages: list[Page],
    on_stage: Callable[[str], None] | None = None,
    *,
    first: int = 0,
    last: int | None = None,
    redo: bool = False,
) -> ShardOutcome:
    """Every stage of one shard, in order. A stage is redone when unfinished, when it had failures, or when a
    stage before it was redone; otherwise its records are read back.

    ``first`` / ``last`` (an executor that moves a shard from pool to pool): only the stages ``first`` to
    ``last - 1``; those before ``first`` were run for this shard in this run and are read back as they are;
    ``redo``: one of them was redone, so these are redone too."""
    run = ctx.run
    outcome = ShardOutcome(shard=shard, pages=len(pages), resumed=not redo)
    upstream: list[QueryRecord] = []
    for index, stage in enumerate(pipeline.stages[:last]):
        if index < first:
            upstream = run.read_shard(stage.name, shard, QueryRecord)
            continue
        if outcome.resumed and run.is_done(stage.name, shard) and not run.failed(stage.name, shard):
            upstream = run.read_shard(stage.name, shard, QueryRecord)
        else:
            outcome.resumed = False
            before, started = _counters(ctx.backends), time.perf_counter()
            kept, rejected = pipeline.run_stage(stage, ctx, pages, upstream)
            after = _counters(ctx.backends)
            cost = {"seconds": time.perf_counter() - started} | {n: after[n] - before[n] for n in COUNTERS}
            outcome.profile[stage.name] = cost
            failed = sum(bool(r.failed) for r in rejected)
            spent = add_costs(run.cost(stage.name, shard), cost)  # a redo's attempts before it count too
            run.write_shard(stage.name, shard, kept, rejected, failed=failed, cost=spent)
            outcome.failed += failed
            upstream = kept
        if on_stage:
            on_stage(stage.name)
    return outcome


class ShardCount:
    """Shards finished per stage, told to an executor's ``on_progress`` (first 0 for every stage)."""

    def __init__(self, names: list[str], shards: int, on_progress: ProgressCallback | None):
        self.done = dict.fromkeys(names, 0)
        self.shards = shards
        self.on_progress = on_progress
        for name in names:
            self._tell(name)

    def advance(self, stage: str) -> None:
        self.done[stage] += 1
        self._tell(stage)

    def _tell(self, stage: str) -> None:
        if self.on_progress:
            self.on_progress(stage, self.done[stage], self.shards)


class Executor(Protocol):
    """Runs a pipeline's stages over shards: every shard through ``run_shard``, wherever it runs; with
    ``spending``, no shard is started once the budget is spent (the outcomes are those of the shards run)."""

    def run(
        self,
        pipeline: Pipeline,
        ctx: StageContext,
        shards: list[tuple[str, list[Page]]],
        on_progress: ProgressCallback | None = None,
        spending: Spending | None = None,
    ) -> list[ShardOutcome]: ...


class LocalExecutor:
    """The shards one after another in this process: a shard goes through every stage before the next starts,
    so results appear early and a killed run loses at most one shard's stage."""

    def run(
        self,
        pipeline: Pipeline,
        ctx: StageContext,
        shards: list[tuple[str, list[Page]]],
        on_progress: ProgressCallback | None = None,
        spending: Spending | None = None,
    ) -> list[ShardOutcome]:
        count = ShardCount(pipeline.names, len(shards), on_progress)
        outcomes = []
        for shard, pages in shards:
            if spending is not None and spending.exhausted():
                break
            outcomes.append(run_shard(pipeline, ctx, shard, pages, count.advance))
            if spending is not None:
                spending.add(outcomes[-1].profile)
        return outcomes
