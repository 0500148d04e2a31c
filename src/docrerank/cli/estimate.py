"""``docrerank estimate``: what a whole run will cost, projected from a small sample run (whose own cost it
states first). The sample's shards are a run directory like any other: generate into the same --run-dir
afterwards and they are reused, not paid for twice."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from docrerank.cli.files import pipeline_config
from docrerank.cli.options import PagesOption
from docrerank.cli.progress import StageBars
from docrerank.cli.stats import print_costs
from docrerank.pages import PageStore
from docrerank.pages.sample import spread_sample
from docrerank.pipeline.costs import run_costs
from docrerank.pipeline.generate import run_pipeline
from docrerank.pipeline.rundir import RunDir
from docrerank.pipeline.stages import STAGES

__all__ = ["estimate_command", "project"]

stdout = Console()
PROJECTED = ("requests_sent", "prompt_tokens", "completion_tokens", "tokens", "seconds", "money", "gpu_hours")


def project(cost: dict, pages: int) -> dict[str, dict[str, float]]:
    """Each stage's cost per page of the sample, times ``pages``; and the total."""
    stages = {
        stage: {name: row["per_page"].get(name, 0.0) * pages for name in PROJECTED}
        for stage, row in cost["stages"].items()
        if row.get("per_page")
    }
    total = {name: sum(row[name] for row in stages.values()) for name in PROJECTED}
    return stages | {"all stages": total}


def estimate_command(
    pages: PagesOption,
    config: Annotated[Path | None, typer.Option("--config", help="pipeline config (YAML); default: built-in")] = None,
    sample: Annotated[int, typer.Option(min=1, help="pages of the sample run, spread over the documents")] = 2,
    run_dir: Annotated[
        Path | None, typer.Option("--run-dir", help="keep the sample run here (generate into it later to reuse it)")
    ] = None,
    out: Annotated[Path | None, typer.Option("--out", help="write the estimate as JSON here")] = None,
    progress: Annotated[bool, typer.Option(help="show progress bars")] = True,
) -> None:
    """Project a whole run's cost (requests, tokens, time on this machine, money and GPU-hours from the config's
    prices) from a sample run of --sample pages over the store's pages with text."""
    store = PageStore.open(pages)
    settings = pipeline_config(config)
    page_ids = spread_sample(store, sample, settings.seed)
    with tempfile.TemporaryDirectory() as scratch:
        folder = run_dir or Path(scratch) / "run"
        with StageBars(disable=not progress) as bars:
            run_pipeline(store, settings, folder, on_progress=bars, page_ids=page_ids)
        cost = run_costs(RunDir(folder), settings, STAGES)
    sampled = cost["stages"].get("positives", {}).get("pages", len(page_ids))
    stdout.print(f"the sample run: {sampled} pages (its cost, every stage, this machine):")
    print_costs(cost)
    target = sum(1 for page in store if page.text.strip())
    projected = project(cost, target)
    table = Table(title=f"projected for the store's {target} pages with text (the sample's cost a page x {target})",
                  title_justify="left")  # fmt: skip
    table.add_column("stage")
    for name in PROJECTED:
        table.add_column(name.replace("_", " "), justify="right")
    for stage, row in projected.items():
        cells = [f"{row[n]:,.4g}" if n in ("money", "gpu_hours") else f"{row[n]:,.0f}" for n in PROJECTED]
        table.add_row(stage, *cells)
    stdout.print(table)
    hours = projected["all stages"]["seconds"] / 3600
    stdout.print(f"time on this machine, as the sample ran: {hours:,.1f} hours (a sample of {sampled} pages: "
                 "pages differ, so a larger --sample narrows it)")  # fmt: skip
    if out:
        out.write_text(json.dumps({"sample": cost, "pages": target, "projected": projected}, indent=2) + "\n")
