"""``docrerank inspect``: a training set's quality checks, each with its number, limit and offending examples."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from docrerank.cli.evaluate import load_benchmark
from docrerank.pages import PageStore
from docrerank.pipeline.inspection import (
    InspectSettings,
    checks_as_json,
    inspect_examples,
    read_examples,
    require_examples,
)

__all__ = ["inspect_command"]

stdout = Console()


def inspect_command(
    source: Annotated[Path, typer.Argument(help="a run directory, an export, a mixture or a pairs file")],
    pages: Annotated[
        Path | None, typer.Option("--pages", help="the page store (a mixture or pairs file's page texts)")
    ] = None,
    against: Annotated[
        str | None, typer.Option(help="an evaluation benchmark to check for leaks (as `evaluate --benchmark`)")
    ] = None,
    against_format: Annotated[str, typer.Option(help="the benchmark's format (as `evaluate --format`)")] = "auto",
    against_queries: Annotated[Path | None, typer.Option(help="its queries (a page store benchmark)")] = None,
    against_qrels: Annotated[Path | None, typer.Option(help="its qrels (a page store benchmark)")] = None,
    config: Annotated[Path | None, typer.Option("--config", help="YAML of thresholds and limits (`inspect:`)")] = None,
    out: Annotated[Path | None, typer.Option("--out", help="write the checks as JSON here")] = None,
    strict: Annotated[bool, typer.Option("--strict", help="exit 1 when a check crosses its limit (for CI)")] = False,
) -> None:
    """Check a training set before it trains: duplicates, leaks into a benchmark, answers inside queries,
    trivial negatives, positives without negatives, property and length skew."""
    settings = InspectSettings.from_yaml(config) if config else InspectSettings()
    store = PageStore.open(pages) if pages else None
    examples, properties = read_examples(source, store)
    require_examples(examples, source)
    benchmark = None
    if against:
        benchmark = load_benchmark(against, against_format, "test", against_queries, against_qrels, 0)
    checks = inspect_examples(examples, settings, properties, benchmark)
    table = Table(title=f"inspect {escape(str(source))}: {len(examples)} positives", title_justify="left")
    for column in ("check", "value", "limit", "", "what"):
        table.add_column(column, justify="left" if column in ("check", "what") else "right")
    for check in checks:
        value = f"{check.value:.3f}" if isinstance(check.value, float) else str(check.value)
        flag = "[red]over[/red]" if check.crossed else "ok"
        table.add_row(check.name, value, f"{check.limit:g}", flag, escape(check.detail))
    stdout.print(table)
    for check in checks:
        if check.examples:
            stdout.print(f"[bold]{check.name}[/bold]" + (" (over its limit)" if check.crossed else ""))
            for example in check.examples:
                stdout.print(f"  {escape(example)}", soft_wrap=True)
    if out:
        out.write_text(checks_as_json(checks) + "\n")
    crossed = [c.name for c in checks if c.crossed]
    if crossed:
        stdout.print(f"over their limits: {', '.join(crossed)}" + ("" if strict else " (--strict makes this exit 1)"))
        if strict:
            raise typer.Exit(1)
