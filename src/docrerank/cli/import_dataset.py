"""``docrerank import``: a ColHNQue-format dataset as a page store and given positives, to start a run from."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from docrerank.cli.progress import counting_bar
from docrerank.pages.settings import IngestSettings, OcrMode
from docrerank.pipeline.colhnque import import_colhnque

__all__ = ["import_command"]

stdout = Console()


def import_command(
    source: Annotated[str, typer.Argument(help="a saved dataset folder, parquet file(s), or a Hugging Face Hub name")],
    pages: Annotated[Path, typer.Option("--pages", help="the page store to write (created or extended)")],
    positives: Annotated[Path, typer.Option("--positives", help="the given-positives JSONL to write")],
    split: Annotated[str, typer.Option(help="the split, for datasets that have several")] = "train",
    limit: Annotated[int | None, typer.Option(help="only the first N rows")] = None,
    ocr: Annotated[OcrMode, typer.Option(help="OCR of the page images (they have no text layer)")] = OcrMode.AUTO,
    progress: Annotated[bool, typer.Option(help="show progress bars")] = True,
) -> None:
    """Import a ColHNQue-format dataset (image, positive_queries, negative_queries, answer).

    Then run `docrerank generate --pages STORE` with `positives: {given: POSITIVES}` in the config: the
    dataset's negatives are verified with the ones the run generates.
    """
    with counting_bar("ingest (pages)", disable=not progress) as bar:
        summary = import_colhnque(
            source, pages, positives, IngestSettings(ocr=ocr), split=split, limit=limit, progress=bar
        )
    stdout.print(
        f"{summary.rows} rows: {summary.pages} pages into {escape(str(pages))}, {summary.positives} positives and "
        f"{summary.negatives} given negatives into {escape(str(positives))}; {len(summary.errors)} errors"
    )
    for error in summary.errors:
        stdout.print(f"[red]error:[/red] {escape(str(error))}", soft_wrap=True)
    if summary.errors:
        raise typer.Exit(1)
