"""``docrerank retrieve``: a first-stage retriever over a page store, written as a TREC run file."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from docrerank.cli.files import print_skipped
from docrerank.cli.options import PagesOption
from docrerank.cli.progress import progress_bar
from docrerank.errors import DocrerankError
from docrerank.pages import PageStore
from docrerank.retrieval import (
    FIRST_STAGE,
    RETRIEVER_NAMES,
    Ranking,
    RetrievalQuery,
    Retriever,
    make_retriever,
    read_queries,
    write_trec,
)

__all__ = ["ModelOption", "QueriesOption", "RetrieverOption", "open_queries", "retrieve_command", "searched"]

stdout = Console()
stderr = Console(stderr=True)
QUERY_BATCH = 256

# options retrieve and mine share
QueriesOption = Annotated[
    Path, typer.Option("--queries", help="JSONL ({query_id?, query, page_id?} a line) or a generation run directory")
]
RetrieverOption = Annotated[
    str,
    typer.Option(
        "--retriever",
        help=f"one of: {', '.join(RETRIEVER_NAMES)}, or two joined by '+' (fused); dense:MODEL names the model",
    ),
]
ModelOption = Annotated[
    str | None,
    typer.Option(
        "--model",
        "--retriever-model",
        help="the dense or ColPali model, if not the default: mpnet, embeddinggemma (from PyPI), a path or Hub name",
    ),
]


def open_queries(pages: Path, queries: Path) -> tuple[PageStore, list[RetrievalQuery], int]:
    """The store, the usable queries, and how many were skipped (each named on stderr with its fix)."""
    store = PageStore.open(pages)
    if not queries.exists():
        raise DocrerankError(f"{queries}: no such file or folder: give a queries JSONL file or a generation run")
    items, errors = read_queries(queries, store)
    print_skipped(errors, stderr)
    without_text = sum(not page.text.strip() for page in store)
    if without_text:
        stderr.print(
            f"[yellow]{without_text} page(s) of {escape(str(pages))} have no text[/yellow]: "
            "text retrievers cannot find them; "
            "re-ingest with OCR (`docrerank ingest ... --ocr auto`)"
        )
    return store, items, len(errors)


def searched(spec: str, store: PageStore, model: str | None, texts: Sequence[str], k: int) -> tuple[Retriever, list]:
    """The retriever ``spec`` names and its rankings for ``texts``, with progress bars (index build, search)."""
    rankings: list[Ranking] = []
    with progress_bar() as bar:
        index_task = None

        def built(done: int, total: int) -> None:
            nonlocal index_task
            if index_task is None:
                index_task = bar.add_task("index", total=total)
            bar.update(index_task, completed=done)

        engine = make_retriever(spec, store, model=model, progress=built)
        task = bar.add_task(f"search ({spec})", total=len(texts))
        for start in range(0, len(texts), QUERY_BATCH):
            batch = texts[start : start + QUERY_BATCH]
            rankings.extend(engine.search(batch, k))
            bar.advance(task, len(batch))
    return engine, rankings


def retrieve_command(
    pages: PagesOption,
    queries: QueriesOption,
    out: Annotated[Path, typer.Option("--out", help="the TREC run file to write")],
    retriever: RetrieverOption = FIRST_STAGE,
    k: Annotated[int, typer.Option("--k", min=1, help="pages per query")] = 20,
    model: ModelOption = None,
) -> None:
    """Rank the store's pages for each query; with known positive pages, report recall@k and MRR."""
    store, items, skipped = open_queries(pages, queries)
    engine, rankings = searched(retriever, store, model, [q.text for q in items], k)
    write_trec({q.query_id: r for q, r in zip(items, rankings, strict=True)}, out, tag=retriever)
    indexes = ", ".join(str(folder) for folder in engine.indexes())
    stdout.print(f"{len(items)} queries, top {k} pages each, written to {escape(str(out))} (index: {escape(indexes)})")
    judged = [(q, r) for q, r in zip(items, rankings, strict=True) if q.positives]
    if judged:
        hits = [next((i for i, (pid, _) in enumerate(r, 1) if pid in q.positives), None) for q, r in judged]
        recall = sum(h is not None for h in hits) / len(judged)
        mrr = sum(1 / h for h in hits if h is not None) / len(judged)
        stdout.print(f"with a known positive: {len(judged)} queries, recall@{k} {recall:.3f}, MRR@{k} {mrr:.3f}")
    if skipped:
        raise typer.Exit(1)
