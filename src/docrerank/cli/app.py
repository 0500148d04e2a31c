"""The ``docrerank`` command line: one Typer app, one subcommand per step of the loop.

Logging is configured here and nowhere else; library code only logs.

Exit codes, the same for every command:

- 0: all done.
- 1: some inputs failed (each named on stderr, or in the command's errors report); the rest was done.
- 2: a usage or user error, nothing done: a bad option, a missing or unreadable file, malformed YAML, a
  config that does not validate, a missing optional package (a ``DocrerankError``). One red line names
  the file or setting and the fix.
- 3: an internal error (a bug in docrerank): one line, and the traceback written to a file (printed too
  with ``-vv``) to report.
- 4: ``train --require-improvement``: the trained model did not beat its first stage and its untrained start
  on every source of the guard; it was kept apart (``OUT/rejected-model``), not saved as the model.
- 5: ``generate --budget-tokens / --budget-money``: the budget was spent; the shards done are kept, a rerun with
  a larger budget goes on.
- 130: interrupted (Ctrl-C).
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
import traceback
from typing import Annotated

import click
import typer
import yaml
from pydantic import ValidationError
from rich.console import Console
from rich.logging import RichHandler
from rich.markup import escape

from docrerank import __version__
from docrerank.cli.backends import app as backends_app
from docrerank.cli.demo import demo_command, samples_command
from docrerank.cli.estimate import estimate_command
from docrerank.cli.evaluate import evaluate_command
from docrerank.cli.export import export_command
from docrerank.cli.files import validation_summary
from docrerank.cli.generate import generate_command
from docrerank.cli.import_dataset import import_command
from docrerank.cli.ingest import ingest_command
from docrerank.cli.inspect import inspect_command
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
from docrerank.cli.view import view_command
from docrerank.errors import DocrerankError

__all__ = ["EXIT_INPUTS_FAILED", "EXIT_INTERNAL", "EXIT_INTERRUPTED", "EXIT_OK", "EXIT_USAGE", "app", "main"]

EXIT_OK, EXIT_INPUTS_FAILED, EXIT_USAGE, EXIT_INTERNAL, EXIT_INTERRUPTED = 0, 1, 2, 3, 130

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
app.command("estimate")(estimate_command)
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
app.command("inspect")(inspect_command)
app.command("view")(view_command)
app.add_typer(backends_app, name="backends")
app.command("samples")(samples_command)
app.command("demo")(demo_command)


def _error(message: str) -> None:
    """One red line on stderr; the message is printed as it is (never read as markup) and never wrapped."""
    console.print(f"[red]error:[/red] {escape(' '.join(message.split()))}", soft_wrap=True)


_PATH_FIXES = {
    FileNotFoundError: "check the path: it does not exist",
    IsADirectoryError: "give a file there, not a folder",
    NotADirectoryError: "a part of the path is a file, not a folder",
    PermissionError: "make it readable (chmod a+r) or choose another path",
}


def _path_error(exc: OSError) -> str:
    fix = next((fix for kind, fix in _PATH_FIXES.items() if isinstance(exc, kind)), "check the path and the disk")
    return f"{exc.filename}: {exc.strerror or exc}. Fix: {fix}"


def _internal_error(exc: Exception) -> None:
    """A bug: one line naming the exception and the file the traceback went to (printed too with -vv)."""
    text = "".join(traceback.format_exception(exc))
    stamp = time.strftime("%Y%m%d-%H%M%S")
    try:
        fd, where = tempfile.mkstemp(prefix=f"docrerank-crash-{stamp}-", suffix=".txt")
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
    except OSError:
        where = None
    if logging.getLogger().isEnabledFor(logging.DEBUG):
        console.print(escape(text), soft_wrap=True)
    saved = f"traceback in {where}" if where else "the traceback could not be saved"
    summary = " ".join(f"{type(exc).__name__}: {exc}".split())
    console.print(
        f"[red]internal error[/red] (a bug in docrerank): {escape(summary)}; {escape(saved)} "
        "(or rerun with -vv to print it); please report it",
        soft_wrap=True,
    )


def _interrupted(exc: BaseException) -> bool:
    """Whether an exit comes from Ctrl-C (Typer exits 130 on it; older Typers exit 1 through click's Abort)."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, (KeyboardInterrupt, click.exceptions.Abort)):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def main() -> None:
    """Entry point: the exit codes of the module docstring; every error is one line, never a traceback."""
    try:
        app()
    except SystemExit as exc:
        if exc.code in (EXIT_INPUTS_FAILED, EXIT_INTERRUPTED) and _interrupted(exc):
            console.print(
                "[yellow]interrupted[/yellow]: rerun the same command (ingest, generate, label and train resume "
                "where they stopped)",
                soft_wrap=True,
            )
            raise SystemExit(EXIT_INTERRUPTED) from None
        raise
    except DocrerankError as exc:
        _error(str(exc))
        raise SystemExit(EXIT_USAGE) from None
    except ValidationError as exc:
        _error(f"{exc.title}: {validation_summary(exc)}")
        raise SystemExit(EXIT_USAGE) from None
    except yaml.YAMLError as exc:
        _error(f"not valid YAML: {exc}. Fix the file's syntax")
        raise SystemExit(EXIT_USAGE) from None
    except OSError as exc:
        if exc.filename is None:
            _internal_error(exc)
            raise SystemExit(EXIT_INTERNAL) from None
        _error(_path_error(exc))
        raise SystemExit(EXIT_USAGE) from None
    except UnicodeDecodeError as exc:
        _error(f"an input file is not UTF-8 text ({exc.reason} at byte {exc.start}). Fix: give it as UTF-8 text")
        raise SystemExit(EXIT_USAGE) from None
    except Exception as exc:
        _internal_error(exc)
        raise SystemExit(EXIT_INTERNAL) from None


if __name__ == "__main__":
    main()
