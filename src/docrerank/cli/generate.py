"""``docrerank generate``: verified positives and hard negative queries for the pages of a store."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Annotated

import typer

from docrerank.cli.stats import print_stats
from docrerank.pages import PageStore
from docrerank.pipeline.config import PipelineConfig
from docrerank.pipeline.generate import run_pipeline

__all__ = ["generate_command", "spread_sample"]


def spread_sample(store: PageStore, n: int, seed: int, min_chars: int = 500) -> list[str]:
    """``n`` page ids, one document after another, a random page of each (pages with real text only).

    A run on a few pages then sees several documents rather than the first pages of one.
    """
    rng = random.Random(seed)
    by_doc = {
        doc: [p.page_id for p in store.pages_of(doc) if len(p.text.strip()) >= min_chars] for doc in store.doc_ids
    }
    pools = [rng.sample(ids, len(ids)) for _, ids in sorted(by_doc.items()) if ids]
    rng.shuffle(pools)
    chosen: list[str] = []
    while len(chosen) < n and any(pools):
        for pool in pools:
            if pool and len(chosen) < n:
                chosen.append(pool.pop())
    return chosen


def generate_command(
    pages: Annotated[Path, typer.Option("--pages", help="a page store (docrerank ingest)")],
    run_dir: Annotated[Path, typer.Option("--run-dir", help="the run directory: output and cache")],
    config: Annotated[Path | None, typer.Option("--config", help="pipeline config (YAML); default: built-in")] = None,
    force: Annotated[bool, typer.Option(help="redo stages whose settings changed")] = False,
    max_pages: Annotated[int | None, typer.Option(help="only the first N pages with text")] = None,
    sample: Annotated[
        int | None,
        typer.Option(help="N pages drawn across the documents in turn (seeded), each with >= 500 characters of text"),
    ] = None,
    progress: Annotated[bool, typer.Option(help="show progress bars")] = True,
) -> None:
    """Run (or resume) the DocReRank pipeline: positives, verification, negatives, verification, selection."""
    store = PageStore.open(pages)
    settings = PipelineConfig.from_yaml(config) if config else PipelineConfig()
    page_ids = None
    if max_pages is not None:
        page_ids = [p.page_id for p in store if p.text.strip()][:max_pages]
    if sample is not None:
        page_ids = spread_sample(store, sample, settings.seed)
    report = run_pipeline(store, settings, run_dir, force=force, show_progress=progress, page_ids=page_ids)
    print_stats(json.loads((report.run_dir / "stats.json").read_text()))
