"""Options that several commands share, declared once: the page store, where the work runs (this machine or a
Ray cluster)."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from docrerank.errors import DocrerankError

__all__ = [
    "IgnoreCorrectionsOption",
    "PagesOption",
    "RowPagesOption",
    "AddressOption",
    "ExecutorKind",
    "ExecutorOption",
    "WorkerGpusOption",
    "WorkersOption",
    "ray_only",
]


PagesOption = Annotated[
    Path, typer.Option("--pages", help="the page store (docrerank ingest) whose pages the inputs name")
]
RowPagesOption = Annotated[
    Path | None,
    typer.Option(
        "--pages", help="the page store: for an export's queries.jsonl (its rows name pages), and page images"
    ),
]


IgnoreCorrectionsOption = Annotated[
    bool,
    typer.Option(
        "--ignore-corrections", help="leave out a person's corrections (RUN/corrections.jsonl, docrerank view)"
    ),
]


class ExecutorKind(str, Enum):
    LOCAL = "local"
    RAY = "ray"


ExecutorOption = Annotated[
    ExecutorKind, typer.Option(help="where the work runs: this machine, or a Ray cluster (--address)")
]
AddressOption = Annotated[
    str | None, typer.Option(help="the Ray cluster (ray start --head prints it); default: start a local one")
]
WorkersOption = Annotated[
    int | None, typer.Option(min=1, help="Ray actors, each on one job at a time (default: the cluster's CPUs)")
]
WorkerGpusOption = Annotated[float, typer.Option(min=0, help="GPUs per Ray actor (in-process models)")]


def ray_only(executor: ExecutorKind, **given: object) -> None:
    """Refuse the Ray options given without ``--executor ray`` (they would be ignored without a word)."""
    named = [f"--{name.replace('_', '-')}" for name, value in given.items() if value]
    if named and executor is not ExecutorKind.RAY:
        raise DocrerankError(f"{' and '.join(named)}: options of --executor ray")
