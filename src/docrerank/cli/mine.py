"""``docrerank mine``: hard negative pages for each (query, positive page), optionally checked by the verifier.

Writes ``OUT/mined.jsonl`` (one example a line: the query, its positive, the mined pages with rank, score
and, with ``--verify``, the verifier's verdict), ``OUT/run.trec`` (the rankings it mined from) and
``OUT/summary.json`` (settings, counts, skip reasons, the likely-false-negative rate overall and by rank).
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from docrerank.cli.files import pipeline_config, print_skipped
from docrerank.cli.options import AddressOption, ExecutorKind, ExecutorOption, PagesOption, ray_only
from docrerank.cli.progress import progress_bar
from docrerank.cli.retrieve import ModelOption, QueriesOption, RetrieverOption, open_queries, searched
from docrerank.errors import DocrerankError
from docrerank.pages import PageStore
from docrerank.pipeline.config import PipelineConfig
from docrerank.pipeline.pairs import PairInput, verifier_for, verify_pairs
from docrerank.pipeline.ray_executor import verify_pairs_on_ray
from docrerank.retrieval import (
    MinedExample,
    MiningSettings,
    RetrievalQuery,
    false_negative_rates,
    mine,
    read_trec,
    write_mined,
    write_trec,
)

__all__ = ["mine_command", "verify_mined"]

stdout = Console()
stderr = Console(stderr=True)


def _from_run(run_path: Path, items: list[RetrievalQuery], top_n: int, store: PageStore):
    run, errors = read_trec(run_path)
    print_skipped(errors, stderr)
    unknown = {page for ranking in run.values() for page, _ in ranking if page not in store}
    if unknown:
        stderr.print(
            f"[yellow]{len(unknown)} page ids of {escape(str(run_path))} are not in the store[/yellow] "
            f"(e.g. {escape(repr(min(unknown)))}): "
            "left out; --pages must name the store the run was made from"
        )
        run = {query: [(p, s) for p, s in ranking if p in store] for query, ranking in run.items()}
    missing = [q.query_id for q in items if q.query_id not in run]
    if missing:
        stderr.print(
            f"[yellow]{len(missing)} queries have no ranking in {escape(str(run_path))}[/yellow] "
            f"(e.g. {escape(repr(missing[0]))}): "
            "the run's query ids must be the queries' query_id"
        )
    rankings = [run.get(q.query_id, [])[:top_n] for q in items]
    scores = [dict(run.get(q.query_id, [])).get(q.positives[0]) if q.positives else None for q in items]
    return rankings, scores, len(errors) + bool(unknown)


def verify_mined(
    examples: list[MinedExample],
    store: PageStore,
    config: PipelineConfig,
    cache: Path,
    executor: ExecutorKind = ExecutorKind.LOCAL,
    address: str | None = None,
) -> int:
    """Ask the positive verifier whether each mined page answers its query; the verdicts go onto the negatives
    (on a Ray cluster's actors with ``executor`` ray). Returns how many negatives could not be judged (pages
    without text)."""
    pairs, targets, unjudged = [], [], 0
    for example in examples:
        for negative in example.negatives:
            if not store[negative.page_id].text.strip():
                unjudged += 1
                continue
            pairs.append(
                PairInput(id=f"{example.query_id}:{negative.page_id}", page_id=negative.page_id, query=example.query)
            )
            targets.append(negative)
    if unjudged:
        stderr.print(f"[yellow]{unjudged} mined page(s) have no text[/yellow]: not verified; re-ingest with OCR")
    with progress_bar() as bar:
        task = bar.add_task("verify", total=len(pairs))
        advance = lambda n: bar.advance(task, n)  # noqa: E731
        if executor is ExecutorKind.RAY:
            results = verify_pairs_on_ray(
                pairs, store, config, "answerable", cache, evidence_rejects=False, address=address, on_batch=advance
            )
        else:
            verifier = verifier_for(config, "answerable", cache)
            results = verify_pairs(pairs, store, verifier, "answerable", evidence_rejects=False, on_batch=advance)
    for negative, result in zip(targets, results, strict=True):
        negative.verdict = result.verdict
        negative.p_yes = [prompt.p_yes for prompt in result.prompts]
    return unjudged


def _print_summary(summary: dict) -> None:
    counts = summary["counts"]
    stdout.print(
        f"{counts['queries']} queries with a positive: {counts['with_negatives']} got negatives "
        f"({counts['negatives']} pages, {counts['full']} with all {summary['settings']['negatives']}); "
        f"positive in the top {summary['settings']['top_n']}: {counts['positive_in_top_n']}"
    )
    for reason, n in summary["skipped"].items():
        stdout.print(f"  no negative for {n}: {escape(reason)}")
    rates = summary.get("false_negatives")
    if rates and rates["judged"]:
        stdout.print(
            f"likely false negatives (the verifier says the mined page answers the query): "
            f"{rates['answerable']}/{rates['judged']} = {rates['rate']:.3f}; with undecided: "
            f"{rates['rate_with_undecided']:.3f}"
        )
        table = Table("rank", "judged", "answerable", "undecided", "rate", title="by rank", title_justify="left")
        for rank, row in rates["by_rank"].items():
            table.add_row(
                str(rank), str(row["judged"]), str(row["answerable"]), str(row["undecided"]), f"{row['rate']:.3f}"
            )
        stdout.print(table)


def mine_command(
    pages: PagesOption,
    queries: QueriesOption,
    out: Annotated[Path, typer.Option("--out", help="folder for mined.jsonl, run.trec and summary.json")],
    retriever: RetrieverOption = "bm25",
    run: Annotated[
        Path | None,
        typer.Option(
            "--trec",
            "--run",
            help="mine from this TREC run file instead of retrieving (query ids must match; --run: its old name)",
        ),
    ] = None,
    model: ModelOption = None,
    top_n: Annotated[
        int, typer.Option("--k", "--top-n", min=1, help="pages retrieved per query (--top-n: its old name)")
    ] = 20,
    negatives: Annotated[int, typer.Option(min=1, help="negatives sampled per (query, positive)")] = 3,
    rank_min: Annotated[int, typer.Option(min=1, help="best rank a negative may have (positives left out)")] = 1,
    rank_max: Annotated[int, typer.Option(min=1, help="worst rank a negative may have")] = 10,
    max_score_ratio: Annotated[
        float, typer.Option(min=0, help="drop candidates scoring >= this x the positive's score; 0 keeps all")
    ] = 0.95,
    seed: Annotated[int, typer.Option(help="the sampling seed")] = 0,
    verify: Annotated[bool, typer.Option("--verify", help="ask the verifier whether each mined page answers")] = False,
    config: Annotated[Path | None, typer.Option("--config", help="pipeline config (YAML) for --verify")] = None,
    cache: Annotated[Path | None, typer.Option(help="response cache for --verify (default: OUT/cache.sqlite)")] = None,
    executor: ExecutorOption = ExecutorKind.LOCAL,
    address: AddressOption = None,
) -> None:
    """Mine hard negative pages for every query that has a known positive page."""
    ray_only(executor, address=address)
    if rank_max < rank_min:
        raise typer.BadParameter(f"--rank-max ({rank_max}) is below --rank-min ({rank_min})")
    settings = MiningSettings(
        top_n=top_n,
        negatives=negatives,
        rank_min=rank_min,
        rank_max=rank_max,
        max_score_ratio=max_score_ratio or None,
        seed=seed,
    )
    store, items, skipped = open_queries(pages, queries)
    unlabeled = [q for q in items if not q.positives]
    if unlabeled:
        stderr.print(
            f"[yellow]{len(unlabeled)} queries have no known positive page[/yellow] (no page_id, or answerable: "
            "false): not mined"
        )
    items = [q for q in items if q.positives]
    if not items:
        raise DocrerankError(f"no query of {queries} names its positive page: give page_id on each line")
    verify_config = pipeline_config(config)  # checked before the work
    out.mkdir(parents=True, exist_ok=True)
    if run is not None:
        rankings, positive_scores, bad_lines = _from_run(run, items, top_n, store)
        skipped += bad_lines
        source = {"run": str(run)}
    else:
        engine, rankings = searched(retriever, store, model, [q.text for q in items], top_n)
        positive_scores = engine.score([q.text for q in items], [q.positives[0] for q in items])
        write_trec({q.query_id: r for q, r in zip(items, rankings, strict=True)}, out / "run.trec", tag=engine.name)
        source = {"retriever": retriever, "settings": engine.settings()}
    examples = mine(items, rankings, positive_scores, settings)
    unjudged = 0
    if verify:
        unjudged = verify_mined(examples, store, verify_config, cache or out / "cache.sqlite", executor, address)
    write_mined(examples, out / "mined.jsonl")
    summary = {
        "pages": str(pages),
        "queries": str(queries),
        "source": source,
        "settings": settings.model_dump(),
        "counts": {
            "queries": len(examples),
            "with_negatives": sum(bool(e.negatives) for e in examples),
            "full": sum(len(e.negatives) == settings.negatives for e in examples),
            "negatives": sum(len(e.negatives) for e in examples),
            "positive_in_top_n": sum(e.positive_rank is not None for e in examples),
            "dropped_by_threshold": sum(e.dropped_by_threshold for e in examples),
            "skipped_inputs": skipped,
        },
        "skipped": dict(Counter(e.skipped for e in examples if e.skipped).most_common()),
    }
    if verify:
        summary["false_negatives"] = {**false_negative_rates(examples), "unjudged": unjudged}
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    _print_summary(summary)
    stdout.print(f"written to {escape(str(out / 'mined.jsonl'))}")
    if skipped:
        raise typer.Exit(1)
