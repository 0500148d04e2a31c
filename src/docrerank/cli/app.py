"""The ``docrerank`` command line: one Typer app, one subcommand per step of the loop.

Logging is configured here and nowhere else; library code only logs. Exit codes: 0 all done, 1 some
inputs failed (the rest was done; see the errors report), 2 bad usage or settings (nothing was done).
"""

from __future__ import annotations

import logging
from typing import Annotated

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.logging import RichHandler

from docrerank import __version__
from docrerank.cli.backends import app as backends_app
from docrerank.cli.demo import demo_command, samples_command
from docrerank.cli.evaluate import evaluate_command
from docrerank.cli.export import export_command
from docrerank.cli.generate import generate_command
from docrerank.cli.import_dataset import import_command
from docrerank.cli.ingest import ingest_command
from docrerank.cli.label import label_command
from docrerank.cli.mine import mine_command
from docrerank.cli.mix import mix_command
from docrerank.cli.report import report_command
from docrerank.cli.rerank import rerank_command
from docrerank.cli.retrieve import retrieve_command
from docrerank.cli.serve import serve_command
from docrerank.cli.stats import stats_command
from docrerank.cli.train import train_command
from docrerank.cli.verify import evaluate_verifier_command, verify_command
from docrerank.errors import DocrerankError

__all__ = ["app", "main"]

console = Console(stderr=True)

app = typer.Typer(
    name="docrerank",
    help="Hard negative queries for document pages (DocReRank), and rerankers trained with them.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"docrerank {__version__}")
        raise typer.Exit()


@app.callback()
def _configure(
    verbose: Annotated[int, typer.Option("--verbose", "-v", count=True, help="-v info, -vv debug")] = 0,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="print the version")
    ] = False,
) -> None:
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logging.basicConfig(
        level=level,
        format="%(message)s",
        handlers=[RichHandler(console=console, show_path=False, rich_tracebacks=True)],
        force=True,
    )


app.command("ingest")(ingest_command)
app.command("import")(import_command)
app.command("generate")(generate_command)
app.command("verify")(verify_command)
app.command("evaluate-verifier")(evaluate_verifier_command)
app.command("retrieve")(retrieve_command)
app.command("mine")(mine_command)
app.command("mix")(mix_command)
app.command("label")(label_command)
app.command("train")(train_command)
app.command("rerank")(rerank_command)
app.command("evaluate")(evaluate_command)
app.command("report")(report_command)
app.command("serve")(serve_command)
app.command("export")(export_command)
app.command("stats")(stats_command)
app.add_typer(backends_app, name="backends")
app.command("samples")(samples_command)
app.command("demo")(demo_command)


def main() -> None:
    """Entry point: user errors become one red line and exit code 2, not a traceback."""
    try:
        app()
    except (DocrerankError, ValidationError) as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
