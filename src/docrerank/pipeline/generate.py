"""The DocReRank pipeline run: its stages (pipeline/stages/) over shards of pages, in a run directory that is
also the cache, by an executor (pipeline/executor.py).

Requests go through the run's response cache: a resumed run re-asks nothing that was answered, and the same
seed gives the same output. Shards are bound to their pages (see rundir.py), and a request that got no
answer is a rejection marked ``failed``: a rerun asks it again and redoes the stages after it for that shard.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from docrerank.errors import DocrerankError
from docrerank.pages import Page, PageStore
from docrerank.pipeline.config import PipelineConfig
from docrerank.pipeline.context import StageContext
from docrerank.pipeline.costs import Budget, Spending, run_costs
from docrerank.pipeline.executor import COUNTERS, Executor, LocalExecutor, ProgressCallback
from docrerank.pipeline.rundir import RunDir
from docrerank.pipeline.stage import Pipeline
from docrerank.pipeline.stages import default_pipeline
from docrerank.pipeline.stats import run_stats

__all__ = ["STORE_FILE", "RunReport", "plan_shards", "run_pipeline"]

STORE_FILE = "store.json"  # RUN/store.json: the page store the run was made from


@dataclass
class RunReport:
    run_dir: Path
    shards: int = 0
    shards_resumed: int = 0
    failed: int = 0  # items whose requests got no answer (see stats.json); a rerun retries them
    skipped: list[str] = field(default_factory=list)  # selected pages without text, left out
    elapsed_s: float = 0.0
    profile: dict[str, dict[str, float]] = field(default_factory=dict)  # stage -> what it cost in this run
    pages_run: int = 0  # pages of shards that ran a stage in this run (not all resumed): the profile's denominator
    budget_stop: str | None = None  # the budget was spent: what was spent, and how many shards are left


def plan_shards(run: RunDir, store: PageStore, pages: list[Page], per_shard: int) -> list[tuple[str, list[Page]]]:
    """The shards that cover ``pages``: the run directory's own shards for pages it already holds (each whole),
    then new shards of ``per_shard`` pages for the rest, in the order of ``pages``.

    Raises:
        DocrerankError: a shard of the run directory holds a page that is not in the store.
    """
    known = run.shard_pages()
    owner = {page_id: shard for shard, page_ids in known.items() for page_id in page_ids}
    planned: dict[str, list[Page]] = {}
    new: dict[str, Page] = {}  # pages no shard holds yet, by id, in order
    for page in pages:
        shard = owner.get(page.page_id)
        if shard is None:
            new.setdefault(page.page_id, page)
        elif shard not in planned:
            missing = [pid for pid in known[shard] if pid not in store]
            if missing:
                raise DocrerankError(
                    f"the run directory {run.root} has a shard ({shard}) with page {missing[0]}, which the store "
                    f"{store.root} lacks: pass the page store the run was made with (--pages), or use a new --run-dir"
                )
            planned[shard] = [store.get(pid) for pid in known[shard]]
    unplanned = list(new.values())
    for start in range(0, len(unplanned), per_shard):
        chunk = unplanned[start : start + per_shard]
        planned[run.add_shard([p.page_id for p in chunk])] = chunk
    return list(planned.items())


def run_pipeline(
    store: PageStore,
    config: PipelineConfig,
    run_dir: str | Path,
    force: bool = False,
    on_progress: ProgressCallback | None = None,
    page_ids: list[str] | None = None,
    pipeline: Pipeline | None = None,
    executor: Executor | None = None,
    budget: Budget | None = None,
) -> RunReport:
    """Run (or resume) the pipeline over the store's pages (or ``page_ids``) into ``run_dir``.

    ``on_progress(stage, shards_done, shards)`` is told of each stage's progress (the library prints nothing).
    ``executor``: where the shards run (default ``LocalExecutor``: in turn, in this process; ``RayExecutor``:
    on a Ray cluster); ``pipeline``: the stages (default: the six of ``pipeline.stages``); ``budget``: no shard is
    started once the run (all its shards and resumes) has spent it (``report.budget_stop`` says so; a rerun
    with a larger budget resumes).

    Raises:
        DocrerankError: ``page_ids`` is empty (an empty selection is never the whole store), the run
            directory is written by another process, was made with other settings, or in an older layout.
        CapabilityError: an enabled stage needs what its backend cannot do (images, token probabilities).
    """
    if page_ids is not None and not page_ids:
        raise DocrerankError("no page was selected: choose at least one page (check --sample / --max-pages)")
    run = RunDir(run_dir)
    pipeline = pipeline or default_pipeline()
    with run.writing():
        started = time.perf_counter()
        run.check_layout(force)
        ctx = StageContext(store, config, run)
        try:
            report = _run(ctx, pipeline, executor or LocalExecutor(), force, on_progress, page_ids, budget)
        finally:
            ctx.close()
        report.elapsed_s = time.perf_counter() - started
        stats = run_stats(run, ctx.backends, report.elapsed_s, report.profile, report.pages_run, pipeline.stages)
        stats["cost"] = run_costs(run, config, pipeline.names)
        run.write_json("stats.json", stats)
        return report


def _run(ctx: StageContext, pipeline: Pipeline, executor, force, on_progress, page_ids, budget) -> RunReport:
    store, config, run = ctx.store, ctx.config, ctx.run
    pipeline.check(ctx)
    run.check_fingerprints(pipeline.fingerprints(ctx), pipeline.names, force)
    (run.root / "config.yaml").write_text(config.to_yaml())
    run.write_json(STORE_FILE, {"root": str(store.root.resolve())})  # where `docrerank view` finds the pages
    report = RunReport(run_dir=run.root)
    if page_ids is None and config.positives.given is not None:
        page_ids = [pid for pid in store.page_ids if pid in ctx.given.positives]
        run.write_json("given_positives_rejected.json", [r.model_dump(exclude_none=True) for r in ctx.given.rejected])
    pages = [store.get(pid) for pid in page_ids] if page_ids is not None else list(store)
    report.skipped = [p.page_id for p in pages if not p.text.strip()]  # the verifier reads page text
    pages = [p for p in pages if p.text.strip()]
    if not pages:
        raise DocrerankError(
            f"no page to run on: no selected page of the store {store.root} has text; ingest with OCR (--ocr auto)"
        )
    shards = plan_shards(run, store, pages, config.pages_per_shard)
    report.shards = len(shards)
    spending = Spending(budget, config, run, pipeline.names) if budget else None
    if spending is not None and spending.exhausted():
        report.budget_stop = f"{spending.describe()} before this run: nothing was run"
        return report
    outcomes = executor.run(pipeline, ctx, shards, on_progress, spending)
    if spending is not None and len(outcomes) < len(shards):
        report.budget_stop = f"{spending.describe()}: {len(shards) - len(outcomes)} of {len(shards)} shards left"
    for outcome in outcomes:
        report.shards_resumed += outcome.resumed
        report.failed += outcome.failed
        report.pages_run += 0 if outcome.resumed else outcome.pages
        for stage, cost in outcome.profile.items():
            total = report.profile.setdefault(stage, dict.fromkeys(("seconds", *COUNTERS), 0.0))
            for name, value in cost.items():
                total[name] += value
    return report
