"""``docrerank report``: evaluation folders (and a run's data quality) as one self-contained HTML page."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from docrerank.evaluation.report import write_report

__all__ = ["report_command"]

stdout = Console()


def report_command(
    evaluations: Annotated[
        list[Path],
        typer.Argument(metavar="EVAL_DIR", help="evaluation folders (docrerank evaluate --out), one section each"),
    ],
    out: Annotated[Path, typer.Option("--out", help="the HTML file to write; its markdown summary goes beside it")],
    run: Annotated[
        Path | None,
        typer.Option(
            "--run-dir",
            "--run",
            help="a generation run directory: its stats.json, as data quality (--run: its old name)",
        ),
    ] = None,
    verifier: Annotated[
        Path | None, typer.Option("--verifier", help="an evaluate-verifier --out folder: the verifier's precision")
    ] = None,
    mined: Annotated[
        Path | None, typer.Option("--mined", help="a mine --verify --out folder: the likely-false-negative rate")
    ] = None,
    inspect: Annotated[
        Path | None, typer.Option("--inspect", help="a `docrerank inspect --out` JSON: the training set's checks")
    ] = None,
) -> None:
    """Write one HTML page (no external resources) with each benchmark's table, charts and worst/best queries."""
    html, md = write_report(evaluations, out, run=run, verifier=verifier, mined=mined, inspect=inspect)
    stdout.print(f"report written to {escape(str(html))} (summary: {escape(str(md))})")
