"""``docrerank samples`` and ``docrerank demo``: the project's sample documents and the main job on them.

The demo runs every step of the loop that exists so far on the embedded default; it grows as steps land:
now ingest, generation on a few pages, stats and export.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from docrerank.cli.export import print_summary
from docrerank.cli.generate import select_pages
from docrerank.cli.ingest import print_report
from docrerank.cli.stats import stats_command
from docrerank.pages import IngestSettings, PageStore, ingest
from docrerank.pipeline.config import PipelineConfig
from docrerank.pipeline.export import export_run
from docrerank.pipeline.generate import run_pipeline
from docrerank.samples import SamplesUnavailableError, default_cache_dir, fetch_samples

__all__ = ["demo_command", "samples_command"]

console = Console(stderr=True)

FALLBACK_PAGES = Path("tests/data/pages")


def samples_command(
    cache_dir: Annotated[Path | None, typer.Option(help="where to keep them (default: $DOCRERANK_CACHE)")] = None,
    package: Annotated[list[str] | None, typer.Option(help="only these packages (repeatable)")] = None,
) -> None:
    """Fetch the sample documents (pinned Debian packages), check their sha256, and list the PDFs."""
    for pdf in fetch_samples(cache_dir, package):
        typer.echo(pdf)


def demo_command(
    out: Annotated[Path, typer.Option(help="the demo's output folder")] = Path("runs/demo"),
    fallback: Annotated[
        Path, typer.Option(help="pages to use when the sample packages cannot be fetched")
    ] = FALLBACK_PAGES,
    workers: Annotated[int | None, typer.Option(help="worker processes (default: all cores)")] = None,
    generate_pages: Annotated[
        int, typer.Option(help="pages (spread over the documents) to generate queries for; 0: ingest only")
    ] = 2,
) -> None:
    """Run the main job on the embedded default: sample documents -> page store -> generated hard negatives
    (all stages, Qwen2.5-Coder-1.5B) -> stats -> a Hugging Face dataset. Rerunning resumes."""
    try:
        inputs = fetch_samples(default_cache_dir())
        console.print(f"[bold]sample documents:[/bold] {len(inputs)} PDFs from the pinned Debian packages")
    except SamplesUnavailableError as exc:
        if not fallback.is_dir():
            raise typer.BadParameter(f"{exc}; and the fallback folder {fallback} does not exist") from None
        console.print(f"[yellow]sample packages unavailable:[/yellow] {escape(str(exc))}", soft_wrap=True)
        console.print(f"falling back to the real pages committed in {escape(str(fallback))}")
        inputs = [fallback]
    report = ingest(inputs, out / "pages", IngestSettings(), workers=workers)
    print_report(report)
    if not report.ok:
        raise typer.Exit(1)
    if generate_pages <= 0:
        return
    store = PageStore.open(out / "pages")
    config = PipelineConfig()
    console.print(f"[bold]generating[/bold] for {generate_pages} page(s) with the embedded default (all stages)")
    page_ids = select_pages(store, out / "pages", None, generate_pages, config.seed)
    run = run_pipeline(store, config, out / "run", page_ids=page_ids)
    stats_command(run.run_dir)
    print_summary(export_run(run.run_dir, store, "hf", out / "dataset", overwrite=True))
    if run.failed:  # stats printed them; rerunning the demo asks them again
        raise typer.Exit(1)
