"""``docrerank generate``: verified positives and hard negative queries for the pages of a store."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from docrerank.cli.files import pipeline_config
from docrerank.cli.options import (
    AddressOption,
    ExecutorKind,
    ExecutorOption,
    PagesOption,
    WorkerGpusOption,
    WorkersOption,
    ray_only,
)
from docrerank.cli.progress import StageBars
from docrerank.cli.stats import print_stats
from docrerank.errors import DocrerankError
from docrerank.pages import PageStore
from docrerank.pages.sample import SAMPLE_MIN_CHARS, spread_sample
from docrerank.pipeline.costs import Budget
from docrerank.pipeline.generate import run_pipeline
from docrerank.pipeline.ray_executor import RayExecutor

__all__ = ["EXIT_BUDGET", "generate_command", "select_pages"]

EXIT_BUDGET = 5  # stopped by --budget-tokens / --budget-money: resumable


def select_pages(
    store: PageStore, where: Path, max_pages: int | None, sample: int | None, seed: int
) -> list[str] | None:
    """The page ids ``--max-pages`` or ``--sample`` choose (None: neither, the whole store). A count below 1,
    both options at once, or a choice that finds no page is an error: never a run over the whole store."""
    if max_pages is not None and sample is not None:
        raise DocrerankError("give --sample N or --max-pages N, not both")
    option, count = ("--sample", sample) if sample is not None else ("--max-pages", max_pages)
    if count is None:
        return None
    if count < 1:
        raise DocrerankError(f"{option} {count}: give a number of pages >= 1 (leave {option} out for every page)")
    if sample is not None:
        page_ids = spread_sample(store, sample, seed)
        wanted = f"with >= {SAMPLE_MIN_CHARS} characters of text"
    else:
        page_ids = [p.page_id for p in store if p.text.strip()][:count]
        wanted = "with text"
    if not page_ids:
        raise DocrerankError(
            f"{option} {count} found no page {wanted} among the {len(store)} page(s) of {where}: ingest documents "
            "with a text layer, or scans with OCR (`docrerank ingest ... --ocr auto`)"
        )
    return page_ids


def generate_command(
    pages: PagesOption,
    run_dir: Annotated[Path, typer.Option("--run-dir", help="the run directory: output and cache")],
    config: Annotated[Path | None, typer.Option("--config", help="pipeline config (YAML); default: built-in")] = None,
    force: Annotated[bool, typer.Option(help="redo stages whose settings changed")] = False,
    max_pages: Annotated[int | None, typer.Option(help="only the first N pages with text")] = None,
    sample: Annotated[
        int | None,
        typer.Option(help="N pages drawn across the documents in turn (seeded), each with >= 500 characters of text"),
    ] = None,
    progress: Annotated[bool, typer.Option(help="show progress bars")] = True,
    executor: ExecutorOption = ExecutorKind.LOCAL,
    address: AddressOption = None,
    workers: WorkersOption = None,
    worker_gpus: WorkerGpusOption = 0,
    budget_tokens: Annotated[
        float | None, typer.Option(min=1, help="stop at the next shard once the run has used this many tokens")
    ] = None,
    budget_money: Annotated[
        float | None, typer.Option(min=0, help="stop at the next shard once the run has spent this (config: prices)")
    ] = None,
) -> None:
    """Run (or resume) the DocReRank pipeline: positives, verification, negatives, verification, selection."""
    store = PageStore.open(pages)
    settings = pipeline_config(config)
    page_ids = select_pages(store, pages, max_pages, sample, settings.seed)
    ray_only(executor, address=address, workers=workers, worker_gpus=worker_gpus)
    runner = None
    if executor is ExecutorKind.RAY:
        runner = RayExecutor(address=address, workers=workers, num_gpus=worker_gpus)
    with StageBars(disable=not progress) as bars:
        report = run_pipeline(
            store, settings, run_dir, force=force, on_progress=bars, page_ids=page_ids, executor=runner,
            budget=Budget(budget_tokens, budget_money) if budget_tokens or budget_money else None,
        )  # fmt: skip
    print_stats(json.loads((report.run_dir / "stats.json").read_text()))
    if runner and runner.actors_lost:
        typer.echo(f"{runner.actors_lost} Ray actor(s) lost during the run: their shards were resumed by others")
    if report.skipped:
        typer.echo(
            f"{len(report.skipped)} page(s) without text left out (the verifier reads page text): "
            "ingest their documents with OCR (--ocr auto) to include them"
        )
    if report.failed:  # requests that got no answer: the rest is done, a rerun retries them
        raise typer.Exit(1)
    if report.budget_stop:
        typer.echo(f"stopped by the budget: {report.budget_stop}; rerun with a larger budget to go on")
        raise typer.Exit(EXIT_BUDGET)
