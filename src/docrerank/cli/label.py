"""``docrerank label``: a training set's (query, page) pairs scored by a teacher LLM, for a student to learn."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from docrerank.cli.files import print_skipped
from docrerank.cli.options import (
    AddressOption,
    ExecutorKind,
    ExecutorOption,
    RowPagesOption,
    WorkerGpusOption,
    WorkersOption,
    ray_only,
)
from docrerank.cli.progress import counting_bar
from docrerank.cli.rerank import PageViewOption, llm_reranker
from docrerank.pages import PageStore
from docrerank.pipeline.ray_executor import score_chunks_on_ray
from docrerank.prompts.requests import DEFAULT_MAX_PAGE_CHARS
from docrerank.training.teacher import EXAMPLES, label_dataset

__all__ = ["label_command"]

stdout = Console()
stderr = Console(stderr=True)


def label_command(
    data: Annotated[
        Path, typer.Option("--data", help="training set: an export, a mixture (hf, parquet, jsonl) or pairs.jsonl")
    ],
    out: Annotated[Path, typer.Option("--out", help=f"folder for the labeled set ({EXAMPLES}) and its score cache")],
    teacher: Annotated[
        Path | None,
        typer.Option("--teacher", help="pipeline config (YAML) holding the teacher's backend (default: built-in)"),
    ] = None,
    backend: Annotated[str, typer.Option("--backend", help="the config's backend that judges")] = "verifier",
    pages: RowPagesOption = None,
    max_page_chars: Annotated[
        int, typer.Option(min=1, help="page text the teacher reads (the rest is cut)")
    ] = DEFAULT_MAX_PAGE_CHARS,
    page_view: PageViewOption = "whole",
    chunk: Annotated[int, typer.Option(min=1, help="pairs a teacher call (and a cache write)")] = 16,
    progress: Annotated[bool, typer.Option(help="show a progress bar")] = True,
    executor: ExecutorOption = ExecutorKind.LOCAL,
    address: AddressOption = None,
    workers: WorkersOption = None,
    worker_gpus: WorkerGpusOption = 0,
) -> None:
    """Score every (query, page) pair of a training set with a zero-shot LLM teacher (P(True)) and write the set
    with a teacher score beside each hard label; `docrerank train --targets teacher|both` learns from it.

    Scores are cached in OUT: rerun with the same --out to resume after a kill. --executor ray scores the
    chunks on a Ray cluster's actors, each holding the teacher (an in-process model loads once per actor).
    """
    ray_only(executor, address=address, workers=workers, worker_gpus=worker_gpus)
    engine = llm_reranker(teacher, backend, max_page_chars, page_view)
    run_chunks = None
    if executor is ExecutorKind.RAY:
        run_chunks = score_chunks_on_ray(engine, address=address, workers=workers, num_gpus=worker_gpus)
    store = PageStore.open(pages) if pages else None
    details = {"teacher_config": str(teacher) if teacher else "built-in", "backend": backend}
    with counting_bar("label", disable=not progress) as bar:
        summary = label_dataset(
            data, out, engine, store, chunk=chunk, progress=bar, details=details, run_chunks=run_chunks
        )
    print_skipped(summary.errors, stderr)
    stdout.print(
        f"{summary.pairs} pairs of {summary.groups} groups: {summary.cached} cached, {summary.scored} scored, "
        f"{summary.unscored} without a teacher score ({summary.seconds:.0f} s); "
        f"written to {escape(str(out / EXAMPLES))}"
    )
    stdout.print(f"train on it: docrerank train --data {escape(str(out))} --targets teacher --out STUDENT")
    if summary.errors:
        raise typer.Exit(1)
