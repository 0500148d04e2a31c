"""``docrerank retrieve``: a first-stage retriever over a page store, written as a TREC run file."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from docrerank.pages import PageStore
from docrerank.retrieval import BM25Retriever, Retriever, read_queries, write_trec

__all__ = ["RETRIEVERS", "retrieve_command"]

stdout = Console()
stderr = Console(stderr=True)

RETRIEVERS: dict[str, type[Retriever]] = {"bm25": BM25Retriever}


def retrieve_command(
    pages: Annotated[Path, typer.Option("--pages", help="a page store (docrerank ingest)")],
    queries: Annotated[
        Path,
        typer.Option("--queries", help="JSONL ({query_id?, query, page_id?} a line) or a generation run directory"),
    ],
    out: Annotated[Path, typer.Option("--out", help="the TREC run file to write")],
    retriever: Annotated[str, typer.Option("--retriever", help=f"one of: {', '.join(RETRIEVERS)}")] = "bm25",
    k: Annotated[int, typer.Option("--k", min=1, help="pages per query")] = 20,
) -> None:
    """Rank the store's pages for each query; with known positive pages, report recall@k and MRR."""
    if retriever not in RETRIEVERS:
        raise typer.BadParameter(f"unknown retriever {retriever!r}; one of: {', '.join(RETRIEVERS)}")
    store = PageStore.open(pages)
    items, errors = read_queries(queries, store)
    for error in errors:
        stderr.print(f"[yellow]skipped[/yellow] {error}")
    engine = RETRIEVERS[retriever](store)
    rankings = engine.search([q.text for q in items], k)
    write_trec({q.query_id: r for q, r in zip(items, rankings, strict=True)}, out, tag=retriever)
    stdout.print(f"{len(items)} queries, top {k} pages each, written to {out} (index: {engine.index_dir})")
    judged = [(q, r) for q, r in zip(items, rankings, strict=True) if q.positives]
    if judged:
        hits = [next((i for i, (pid, _) in enumerate(r, 1) if pid in q.positives), None) for q, r in judged]
        recall = sum(h is not None for h in hits) / len(judged)
        mrr = sum(1 / h for h in hits if h is not None) / len(judged)
        stdout.print(f"with a known positive: {len(judged)} queries, recall@{k} {recall:.3f}, MRR@{k} {mrr:.3f}")
    if errors:
        raise typer.Exit(1)
