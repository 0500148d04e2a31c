"""``docrerank evaluate``: a first stage and rerankers on a benchmark, the paper's table, per-query results."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from docrerank.cli.files import print_skipped
from docrerank.cli.progress import counting_bar
from docrerank.cli.rerank import RERANKERS, PageViewOption, TrustRerankerOption, make_reranker
from docrerank.errors import DocrerankError
from docrerank.evaluation import (
    Benchmark,
    ScoreCache,
    evaluate,
    load_beir,
    load_realmm,
    load_store,
    load_vidore,
    reranker_identity,
)
from docrerank.evaluation.report import read_quality, write_report
from docrerank.evaluation.results import table_rows, write_evaluation
from docrerank.rerankers.onnx_runtime import RUNTIMES
from docrerank.retrieval import FIRST_STAGE, RETRIEVER_NAMES, make_retriever, read_trec
from docrerank.retrieval.runs import Run

__all__ = ["evaluate_command", "load_benchmark"]

stdout, stderr = Console(), Console(stderr=True)


BENCHMARK_FORMATS = ("auto", "beir", "store", "vidore", "realmm")


def load_benchmark(
    source: str, kind: str, split: str, queries: Path | None, qrels: Path | None, level: int
) -> Benchmark:
    """``--benchmark`` in the ``--format`` given, or guessed from the folder (``auto``: a local folder only)."""
    path = Path(source)
    if kind == "auto":
        if not path.exists():
            raise DocrerankError(
                f"{source}: no such folder: give a BEIR folder, a page store or a ViDoRe folder (or --format vidore "
                "or realmm with a Hub dataset id)"
            )
        guesses = {"beir": path / "corpus.jsonl", "store": path / "pages.parquet", "vidore": path / "corpus"}
        kind = next((name for name, marker in guesses.items() if marker.exists()), "")
        if not kind:
            raise DocrerankError(
                f"{source}: not a BEIR folder (corpus.jsonl), a page store (pages.parquet) or a ViDoRe folder "
                "(corpus/): give --format (vidore or realmm for a Hub dataset id or a parquet table)"
            )
    if kind == "beir":
        return load_beir(path, split)
    if kind == "store":
        if queries is None or qrels is None:
            raise DocrerankError(f"{source} is a page store: give its --queries (JSONL) and --qrels (TREC)")
        return load_store(path, queries, qrels)
    if kind == "vidore":
        return load_vidore(source, split)
    if kind == "realmm":
        return load_realmm(source, level, split)
    raise DocrerankError(f"--format {kind!r}: use one of {', '.join(BENCHMARK_FORMATS)}")


def _first_stage(benchmark: Benchmark, spec: str, k: int, model: str | None) -> tuple[Run, int]:
    """The first stage's rankings, and how many lines of its run file were bad (skipped)."""
    if Path(spec).is_file():
        run, errors = read_trec(Path(spec))
        print_skipped(errors, stderr)
        unknown = {p for ranking in run.values() for p, _ in ranking if p not in benchmark.corpus}
        if unknown:
            stderr.print(
                f"[yellow]{len(unknown)} page ids of {escape(spec)} are not in the corpus[/yellow]: left out",
                soft_wrap=True,
            )
        return {q: [(p, s) for p, s in ranking if p in benchmark.corpus] for q, ranking in run.items()}, len(errors)
    if spec.split("+")[0].partition(":")[0] not in RETRIEVER_NAMES:
        raise DocrerankError(f"--first-stage {spec!r}: not a run file, nor one of {', '.join(RETRIEVER_NAMES)}")
    retriever = make_retriever(spec, benchmark.corpus, model)
    queries = benchmark.judged_queries
    rankings = retriever.search([benchmark.queries[q] for q in queries], k)
    return dict(zip(queries, rankings, strict=True)), 0


def _reranker_spec(spec: str, config: Path | None, backend: str, trust: bool = False, page_view: str | None = None):
    kind, _, model = spec.partition("=")
    runtime = "torch"
    if "@" in model and model.rpartition("@")[2] in RUNTIMES:  # saved=DIR@onnx-int8: the same model on ONNX
        model, _, runtime = model.rpartition("@")
    if kind not in RERANKERS:
        raise DocrerankError(
            f"--rerankers {spec!r}: want KIND, KIND=MODEL or KIND=MODEL@RUNTIME, KIND one of {', '.join(RERANKERS)}"
        )
    reranker = make_reranker(kind, model or None, config, backend, trust=trust, page_view=page_view, runtime=runtime)
    return reranker, reranker_identity(reranker, spec)


def evaluate_command(
    benchmark: Annotated[
        str,
        typer.Option("--benchmark", help="a BEIR or ViDoRe folder, a page store (+ --queries --qrels), a dataset id"),
    ],
    out: Annotated[Path, typer.Option("--out", help="folder for the table, per-query results, runs, score cache")],
    first_stage: Annotated[
        str, typer.Option("--first-stage", help=f"{', '.join(RETRIEVER_NAMES)}, A+B, dense:MODEL, or a TREC run file")
    ] = FIRST_STAGE,
    rerankers: Annotated[
        list[str] | None,
        typer.Option(
            "--rerankers",
            help="KIND[=MODEL[@RUNTIME]], repeat or comma-separate: cross-encoder, saved=DIR, saved=DIR@onnx-int8, llm",
        ),
    ] = None,
    k: Annotated[int, typer.Option("--k", min=1, help="first-stage pages each reranker re-scores")] = 20,
    benchmark_format: Annotated[
        str, typer.Option("--format", help=f"the benchmark's format: {', '.join(BENCHMARK_FORMATS)}")
    ] = "auto",
    split: Annotated[str, typer.Option(help="the benchmark's split")] = "test",
    rephrase_level: Annotated[
        int, typer.Option(min=0, max=3, help="Real-MM-RAG: 0 the original queries, 1-3 their rephrasings")
    ] = 0,
    queries: Annotated[Path | None, typer.Option(help="a page store's queries (query_id, query a line)")] = None,
    qrels: Annotated[Path | None, typer.Option(help="a page store's TREC qrels")] = None,
    retriever_model: Annotated[
        str | None, typer.Option(help="the dense or ColPali model of the first stage (mpnet, embeddinggemma, a path)")
    ] = None,
    config: Annotated[Path | None, typer.Option(help="pipeline config (YAML) with the llm reranker's backend")] = None,
    backend: Annotated[str, typer.Option(help="the config's backend for the llm reranker")] = "verifier",
    trust_reranker: TrustRerankerOption = False,
    page_view: PageViewOption = None,
    report_run: Annotated[
        Path | None,
        typer.Option(
            "--report-run-dir",
            "--report-run",
            help="a generation run directory: its data quality in report.html (--report-run: its old name)",
        ),
    ] = None,
    verifier_report: Annotated[
        Path | None, typer.Option(help="an evaluate-verifier --out folder: the verifier's precision in report.html")
    ] = None,
    mined_report: Annotated[
        Path | None, typer.Option(help="a mine --verify --out folder: the false-negative rate in report.html")
    ] = None,
    inspect_report: Annotated[
        Path | None, typer.Option(help="a `docrerank inspect --out` JSON: the training set's checks in report.html")
    ] = None,
    progress: Annotated[bool, typer.Option(help="show the progress bar")] = True,
) -> None:
    """Rerank a first stage's top --k with each reranker; print the paper-style table and write the results
    and the report (report.html, report.md). A bad line of a benchmark or run file is named and left out
    (exit code 1)."""
    read_quality(report_run, verifier_report, mined_report, inspect_report)  # a wrong path fails now, not after
    data = load_benchmark(benchmark, benchmark_format, split, queries, qrels, rephrase_level)
    print_skipped(data.skipped, stderr)
    for note in data.notes:
        stderr.print(f"[yellow]{escape(data.name)}[/yellow]: {escape(note)}", soft_wrap=True)
    specs = [s.strip() for given in rerankers or [] for s in given.split(",") if s.strip()]
    engines = {spec: _reranker_spec(spec, config, backend, trust_reranker, page_view) for spec in specs}
    run, bad_run_lines = _first_stage(data, first_stage, k, retriever_model)
    out.mkdir(parents=True, exist_ok=True)
    with counting_bar("rerank (pairs)", disable=not progress) as bar:
        result = evaluate(data, run, engines, k, Path(first_stage).name, ScoreCache(out / "scores.sqlite"), bar)
    write_evaluation(result, out)
    header, rows = table_rows(result)
    table = Table(title=f"{escape(data.name)}: {result.queries} queries, top {k} reranked (* p<0.05, ** p<0.01)")
    for column in header:
        table.add_column(escape(column))
    for row in rows:
        table.add_row(*(escape(str(cell)) for cell in row))
    stdout.print(table)
    write_report(
        [out], out / "report.html", run=report_run, verifier=verifier_report, mined=mined_report, inspect=inspect_report
    )
    where = escape(str(out))
    stdout.print(f"written to {where} (report.html, report.md, table.md, summary.json, per_query.jsonl, runs/)")
    if data.skipped or bad_run_lines:
        stderr.print(f"[yellow]{len(data.skipped) + bad_run_lines} bad line(s) left out[/yellow] (named above)")
        raise typer.Exit(1)
