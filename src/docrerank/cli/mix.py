"""``docrerank mix``: a training set from generation runs and mined sets, by a recipe (see RECIPES)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from docrerank.cli.files import read_yaml, validation_summary
from docrerank.cli.options import IgnoreCorrectionsOption, PagesOption
from docrerank.errors import DocrerankError
from docrerank.pages import PageStore
from docrerank.pipeline.export import FORMATS
from docrerank.pipeline.mixture import RECIPES, MixSummary, mix
from docrerank.pipeline.mixture import recipe as mix_recipe

__all__ = ["mix_command"]

stdout = Console()


def _print(summary: MixSummary) -> None:
    table = Table(title=f"mixture {summary.recipe} ({summary.format})", title_justify="left")
    table.add_column("item")
    table.add_column("count", justify="right")
    table.add_row("examples", str(summary.examples))
    for kind, n in sorted(summary.by_kind.items()):
        table.add_row(f"  with negative {kind}", str(n))
    for variant, n in sorted(summary.by_variant.items()):
        table.add_row(f"  {variant} positives", str(n))
    for generator, n in sorted(summary.negatives_by_generator.items()):
        table.add_row(f"  negatives {generator}", str(n))
    table.add_row("examples with fewer negatives than asked", str(summary.short_examples))
    stdout.print(table)
    for note in summary.notes:
        stdout.print(f"[yellow]note[/yellow]: {escape(note)}")
    stdout.print(f"written to {escape(str(summary.out))}")


def mix_command(
    pages: PagesOption,
    out: Annotated[Path, typer.Option("--out", help="the output folder")],
    recipe: Annotated[str, typer.Option("--recipe", help=f"one of: {', '.join(RECIPES)}")] = "base",
    run: Annotated[
        list[Path] | None,
        typer.Option("--run-dir", "--run", help="a generation run directory (repeatable; --run: its old name)"),
    ] = None,
    mined: Annotated[list[Path] | None, typer.Option("--mined", help="a `docrerank mine` folder (repeatable)")] = None,
    format: Annotated[str, typer.Option("--format", help=f"one of: {', '.join(FORMATS)}")] = "hf",
    config: Annotated[
        Path | None, typer.Option("--config", help="YAML overriding the recipe's fields (mined, generated, total, ...)")
    ] = None,
    total: Annotated[int | None, typer.Option(min=1, help="examples of original positives")] = None,
    seed: Annotated[int | None, typer.Option(help="the sampling seed")] = None,
    overwrite: Annotated[bool, typer.Option(help="replace a non-empty --out folder")] = False,
    ignore_corrections: IgnoreCorrectionsOption = False,
) -> None:
    """Mix mined negative pages and generated negative queries into one training set, by example."""
    overrides = read_yaml(config, "a mixture config (YAML)") if config else {}
    overrides = overrides.get("mix", overrides)
    if not isinstance(overrides, dict):
        raise DocrerankError(f"{config}: 'mix:' holds 'key: value' lines of the recipe's fields")
    overrides.update({k: v for k, v in {"total": total, "seed": seed}.items() if v is not None})
    try:
        mix_recipe(recipe, overrides)  # the config's fields checked before any work
    except ValidationError as exc:
        where = f"{config}: " if config else ""
        raise DocrerankError(f"{where}bad recipe fields: {validation_summary(exc)}; fix these fields") from None
    summary = mix(
        PageStore.open(pages), run or [], mined or [], recipe, out, format, overrides, overwrite,
        corrections=not ignore_corrections,
    )  # fmt: skip
    _print(summary)
