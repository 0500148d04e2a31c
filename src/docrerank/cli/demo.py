"""``docrerank samples`` and ``docrerank demo``: the project's sample documents and the main job on them.

The demo runs the whole loop on the embedded default: ingest, generation on a few pages of the train
documents, stats and export; then the payoff, as the CLI commands a user would type: negative pages mined,
a `full` mixture of the live run and the committed training set, MiniLM adapted on it (`train --reranker
bi-encoder`, guarded), `evaluate` on the quality benchmark's held-out questions, and the default chain of
`rerank` beside it on a slice of them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from docrerank.cli.export import print_summary
from docrerank.cli.generate import select_pages
from docrerank.cli.ingest import print_report
from docrerank.cli.progress import StageBars
from docrerank.cli.stats import stats_command
from docrerank.errors import DocrerankError
from docrerank.pages import IngestSettings, PageStore, ingest
from docrerank.pipeline.config import PipelineConfig
from docrerank.pipeline.export import export_run, read_selected
from docrerank.pipeline.generate import run_pipeline
from docrerank.pipeline.rundir import RunDir
from docrerank.samples import SamplesUnavailableError, default_cache_dir, fetch_samples
from docrerank.samples.split import train_pages

__all__ = ["demo_command", "samples_command"]

console = Console(stderr=True)

FALLBACK_PAGES = Path("tests/data/pages")
# the quality benchmark (split, held-out questions, qrels) and the committed generated training set
BENCHMARK_DATA = Path("bench/data")
FIRST_STAGE = "dense"  # the bundled MiniLM: EmbeddingGemma's index of the 839 pages takes ~80 min on 2 cores
# EmbeddingGemma's top 10 over the test pages for the rephrased questions, as the default chain was tested on
# (`docrerank retrieve --pages runs/decision94/pages --queries runs/decision94/queries-rephrased.jsonl --k 10`)
CHAIN_FIRST_STAGE = Path("declared-chain/embeddinggemma-top10-rephrased.trec")
CHAIN_QUESTIONS = 10  # the default chain's slice of them: ~20 s a question on 2 cores


def samples_command(
    cache_dir: Annotated[Path | None, typer.Option(help="where to keep them (default: $DOCRERANK_CACHE)")] = None,
    package: Annotated[list[str] | None, typer.Option(help="only these packages (repeatable)")] = None,
) -> None:
    """Fetch the sample documents (pinned Debian packages), check their sha256, and list the PDFs."""
    for pdf in fetch_samples(cache_dir, package):
        typer.echo(pdf)


def demo_command(
    out: Annotated[Path, typer.Option(help="the demo's output folder")] = Path("runs/demo"),
    fallback: Annotated[
        Path, typer.Option(help="pages to use when the sample packages cannot be fetched")
    ] = FALLBACK_PAGES,
    workers: Annotated[int | None, typer.Option(help="worker processes (default: all cores)")] = None,
    generate_pages: Annotated[
        int, typer.Option(help="pages (of the train documents) to generate queries for; 0: ingest only")
    ] = 2,
    benchmark_data: Annotated[
        Path, typer.Option(help="the quality benchmark's split, questions and qrels, and the committed training set")
    ] = BENCHMARK_DATA,
    payoff: Annotated[
        bool, typer.Option(help="train on the generated data and evaluate on the held-out questions")
    ] = True,
) -> None:
    """Run the main job on the embedded default: sample documents -> page store -> generated hard negatives
    (all stages, Qwen2.5-Coder-1.5B) -> stats -> a Hugging Face dataset -> a reranker trained on it ->
    its evaluation on held-out questions. Rerunning resumes."""
    samples = True
    try:
        inputs = fetch_samples(default_cache_dir())
        console.print(f"[bold]sample documents:[/bold] {len(inputs)} PDFs from the pinned Debian packages")
    except SamplesUnavailableError as exc:
        if not fallback.is_dir():
            raise typer.BadParameter(f"{exc}; and the fallback folder {fallback} does not exist") from None
        console.print(f"[yellow]sample packages unavailable:[/yellow] {escape(str(exc))}", soft_wrap=True)
        console.print(f"falling back to the real pages committed in {escape(str(fallback))}")
        inputs, samples = [fallback], False
    report = ingest(inputs, out / "pages", IngestSettings(), workers=workers)
    print_report(report)
    if not report.ok:
        raise typer.Exit(1)
    if generate_pages <= 0:
        return
    store = PageStore.open(out / "pages")
    config = PipelineConfig()
    payoff = payoff and samples and _payoff_data_present(benchmark_data)
    if payoff:  # pages the committed set does not hold yet, of the train documents only
        held = {pid for ids in RunDir(benchmark_data / "trainset" / "run").shard_pages().values() for pid in ids}
        split = benchmark_data / "quality-split.json"
        page_ids = [pid for pid in train_pages(store, split) if pid not in held][:generate_pages]
        where = "of the train documents"
    else:
        page_ids = select_pages(store, out / "pages", None, generate_pages, config.seed)
        where = "spread over the documents"
    console.print(f"[bold]generating[/bold] for {len(page_ids)} page(s) {where}, embedded default (all stages)")
    with StageBars() as bars:
        run = run_pipeline(store, config, out / "run", on_progress=bars, page_ids=page_ids)
    stats_command(run.run_dir)
    print_summary(export_run(run.run_dir, store, "hf", out / "dataset", overwrite=True))
    if run.failed:  # stats printed them; rerunning the demo asks them again
        raise typer.Exit(1)
    if payoff:
        show_payoff(out, benchmark_data, run.run_dir)


def _payoff_data_present(data: Path) -> bool:
    missing = [
        name
        for name in ("quality-split.json", "quality-queries.jsonl", "quality-qrels.trec", "trainset/run")
        if not (data / name).exists()
    ]
    if missing:
        console.print(
            f"[yellow]no payoff step[/yellow]: {escape(str(data))} lacks {', '.join(missing)} (run the demo from "
            "a clone of the repository, or give --benchmark-data)",
            soft_wrap=True,
        )
    return not missing


def _docrerank(*words: object) -> None:
    """One step of the payoff: printed as the command a user types, then run as that command, in process."""
    from docrerank.cli.app import app  # the app imports this module

    args = [str(word) for word in words]
    console.print(f"\n[bold]$ docrerank {escape(' '.join(args))}[/bold]", soft_wrap=True)
    code = typer.main.get_command(app).main(args, prog_name="docrerank", standalone_mode=False)
    if code:
        raise typer.Exit(code)


def rephrased_twins(folder: Path, rows: list[dict], judgments: list[str]) -> tuple[Path, Path]:
    """The rephrased twins of the quality questions ``rows`` (fewer of the page's own words) as
    ``folder/queries.jsonl``, and their judgments of ``judgments`` (qrels lines) as ``folder/qrels.trec``."""
    folder.mkdir(parents=True, exist_ok=True)
    twins = {row["query_id"] + "-r": row["rephrased"] for row in rows}
    queries, qrels = folder / "queries.jsonl", folder / "qrels.trec"
    queries.write_text("".join(json.dumps({"query_id": q, "query": text}) + "\n" for q, text in twins.items()))
    qrels.write_text("".join(line for line in judgments if line.split()[0] in twins))
    return queries, qrels


def show_payoff(out: Path, data: Path, live_run: Path) -> None:
    """What a user came for: a reranker trained on the generated data, measured on questions written by people.

    The data: the live run and the committed training set (bench/trainset.py: the same pipeline on more
    train pages), each with BM25-mined negative pages, as the `full` mixture. The model: MiniLM adapted as a
    bi-encoder (it starts trained; a cross-encoder's fresh head cannot learn from this little). The test:
    the quality benchmark's rephrased questions, all on test documents, against the same MiniLM untrained as
    the first stage. Then the default chain of `rerank` beside that model, over EmbeddingGemma's committed top
    10 (the candidates it was tested on), on the first ``CHAIN_QUESTIONS`` of those questions (its LLM is slow).
    """
    pages, runs, committed = out / "pages", [live_run], data / "trainset" / "run"
    try:
        read_selected(committed)  # a shard killed half-way makes it unfinished: `bench/trainset.py` resumes it
        runs.append(committed)
    except DocrerankError as exc:
        console.print(f"[yellow]trained on the live run alone[/yellow]: {escape(str(exc))}", soft_wrap=True)
    mined = [out / "mined" / name for name in ("live", "trainset")][: len(runs)]
    for run, target in zip(runs, mined, strict=True):
        _docrerank("mine", "--pages", pages, "--queries", run, "--out", target)
    mixture = out / "mixture"
    sources = [word for run, found in zip(runs, mined, strict=True) for word in ("--run-dir", run, "--mined", found)]
    _docrerank("mix", "--recipe", "full", "--pages", pages, *sources, "--out", mixture, "--overwrite")
    rows = [json.loads(line) for line in (data / "quality-queries.jsonl").read_text().splitlines() if line.strip()]
    judgments = (data / "quality-qrels.trec").read_text().splitlines(keepends=True)
    questions, qrels = rephrased_twins(out / "held-out", rows, judgments)
    model, evaluation = out / "model", out / "evaluation"
    _docrerank(
        "train", "--reranker", "bi-encoder", "--data", mixture, "--out", model, "--held-out", 0, "--epochs", 1,
        "--batch", 4, "--first-stage", FIRST_STAGE, "--guard-benchmark", pages, "--guard-queries", questions,
        "--guard-qrels", qrels,
    )  # fmt: skip
    _docrerank(
        "evaluate", "--benchmark", pages, "--queries", questions, "--qrels", qrels, "--first-stage", FIRST_STAGE,
        "--k", 10, "--rerankers", f"saved={model}", "--report-run-dir", live_run, "--out", evaluation,
    )  # fmt: skip
    chain_first_stage = data / CHAIN_FIRST_STAGE
    if not chain_first_stage.is_file():
        console.print(f"[yellow]no default-chain step[/yellow]: {escape(str(chain_first_stage))} is missing")
        return
    sliced = rephrased_twins(out / "held-out" / f"first-{CHAIN_QUESTIONS}", rows[:CHAIN_QUESTIONS], judgments)
    _docrerank(
        "evaluate", "--benchmark", pages, "--queries", sliced[0], "--qrels", sliced[1],
        "--first-stage", chain_first_stage, "--k", 10, "--rerankers", f"cascade,saved={model}",
        "--out", out / "evaluation-chain",
    )  # fmt: skip
