"""``docrerank export``: a finished run's queries as a training data set (hf, parquet, jsonl, pairs)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from docrerank.cli.options import IgnoreCorrectionsOption, PagesOption
from docrerank.pages import PageStore
from docrerank.pipeline.export import FORMATS, ExportSummary, export_run

__all__ = ["export_command", "print_summary"]

stdout = Console()


def print_summary(summary: ExportSummary) -> None:
    """Rows written, positives, rephrasings and negatives (by generator)."""
    table = Table(title=f"export ({summary.format})", title_justify="left")
    table.add_column("item")
    table.add_column("count", justify="right")
    for label, value in (
        ("rows", summary.rows),
        ("pages", summary.pages),
        ("positives", summary.positives),
        ("rephrased", summary.rephrased),
        ("negatives", summary.negatives),
    ):
        table.add_row(label, str(value))
    for generator, count in sorted(summary.negatives_by_generator.items()):
        table.add_row(f"  negatives {escape(generator)}", str(count))
    if summary.corrections and summary.corrections.in_force:
        applied = summary.corrections
        table.add_row("corrections in force", str(applied.in_force))
        for label, value in (
            ("dropped", applied.dropped),
            ("kept after all", applied.added),
            ("edited", applied.edited),
            ("no longer matching an item", len(applied.unmatched)),
        ):
            table.add_row(f"  {label}", str(value))  # fmt: skip
    stdout.print(table)
    stdout.print(f"written to {escape(str(summary.out))}")


def export_command(
    run_dir: Annotated[Path, typer.Argument(help="a run directory (docrerank generate --run-dir)")],
    pages: PagesOption,
    out: Annotated[Path, typer.Option("--out", help="the output folder")],
    format: Annotated[str, typer.Option("--format", help=f"one of: {', '.join(FORMATS)}")] = "hf",
    overwrite: Annotated[bool, typer.Option(help="replace a non-empty --out folder")] = False,
    ignore_corrections: IgnoreCorrectionsOption = False,
) -> None:
    """Export the run's selected positives, rephrasings and negatives as a data set, with a person's
    corrections (docrerank view) applied; their readings also go to OUT/corrected_pairs.jsonl."""
    store = PageStore.open(pages)
    print_summary(export_run(run_dir, store, format, out, overwrite=overwrite, corrections=not ignore_corrections))
