"""``docrerank verify`` and ``docrerank evaluate-verifier``: the verification stage on given pairs, and its
accuracy on labeled ones."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from docrerank.cli.files import pipeline_config, print_skipped, read_text
from docrerank.cli.options import AddressOption, ExecutorKind, ExecutorOption, PagesOption, ray_only
from docrerank.cli.progress import progress_bar
from docrerank.errors import DocrerankError, InputError
from docrerank.pages import PageStore
from docrerank.pipeline.pairs import VerifiedPair, parse_pairs, verifier_for, verify_pairs, write_results
from docrerank.pipeline.ray_executor import verify_pairs_on_ray
from docrerank.pipeline.verifier_eval import evaluate_verifier, write_calibration_plot
from docrerank.pipeline.verify import Expectation

__all__ = ["evaluate_verifier_command", "print_verifier_report", "verify_command"]

stdout = Console()
stderr = Console(stderr=True)

_EXPECT: dict[str, Expectation] = {"negative": "unanswerable", "positive": "answerable"}

# options both commands take
ConfigOption = Annotated[Path | None, typer.Option("--config", help="pipeline config (YAML); default: built-in")]
ProgressOption = Annotated[bool, typer.Option(help="show a progress bar")]


def _run(
    pages: Path,
    pairs_path: Path,
    config: Path | None,
    role: str,
    cache: Path,
    progress: bool,
    executor: ExecutorKind = ExecutorKind.LOCAL,
    address: str | None = None,
) -> tuple[list[VerifiedPair], list[InputError]]:
    if role not in _EXPECT:
        raise typer.BadParameter(f"--as must be negative or positive, not {role!r}")
    store = PageStore.open(pages)
    settings = pipeline_config(config)
    text = read_text(pairs_path, "a pairs JSONL file")
    pairs, errors = parse_pairs(text.splitlines(), str(pairs_path), store)
    print_skipped(errors, stderr)
    expect = _EXPECT[role]
    with progress_bar(disable=not progress) as bar:
        task = bar.add_task("verify", total=len(pairs))
        if executor is ExecutorKind.RAY:
            results = verify_pairs_on_ray(
                pairs,
                store,
                settings,
                expect,
                cache,
                evidence_rejects=settings.negatives_verified.evidence_rejects,
                address=address,
                on_batch=lambda n: bar.advance(task, n),
            )
        else:
            results = verify_pairs(
                pairs,
                store,
                verifier_for(settings, expect, cache),
                expect,
                evidence_rejects=settings.negatives_verified.evidence_rejects,
                on_batch=lambda n: bar.advance(task, n),
            )
    return results, errors


def verify_command(
    pages: PagesOption,
    pairs: Annotated[Path, typer.Option("--pairs", help="JSONL: {page_id, query, changed_from?, changed_to?} a line")],
    out: Annotated[Path, typer.Option("--out", help="the result: JSONL, one verdict a pair, in input order")],
    config: ConfigOption = None,
    role: Annotated[
        str,
        typer.Option(
            "--as", help="negative: accept when unanswerable (the negatives' check); positive: when answerable"
        ),
    ] = "negative",
    cache: Annotated[
        Path | None, typer.Option(help="response cache (default: OUT.cache.sqlite); a run's cache.sqlite to share it")
    ] = None,
    progress: ProgressOption = True,
    executor: ExecutorOption = ExecutorKind.LOCAL,
    address: AddressOption = None,
) -> None:
    """Run the pipeline's verifier on given (page, query) pairs: each prompt's P(yes), the verdict, the decision.
    --executor ray spreads the pages over a Ray cluster's actors (the store and the cache on shared paths)."""
    ray_only(executor, address=address)
    cache = cache or out.with_suffix(".cache.sqlite")
    results, errors = _run(pages, pairs, config, role, cache, progress, executor, address)
    write_results(results, out)
    counts = {v: sum(r.verdict == v for r in results) for v in ("answerable", "undecided", "unanswerable")}
    accepted = sum(r.accepted for r in results)
    stdout.print(
        f"{len(results)} pairs verified: {counts['answerable']} answerable, {counts['undecided']} undecided, "
        f"{counts['unanswerable']} unanswerable; {accepted} accepted as {role}s. Written to {escape(str(out))}"
    )
    if errors:
        stderr.print(f"[yellow]{len(errors)} line(s) skipped[/yellow] (see above)")
        raise typer.Exit(1)


def _fmt(value: Any) -> str:
    return "-" if value is None else f"{value:.3f}" if isinstance(value, float) else str(value)


def print_verifier_report(report: dict[str, Any]) -> None:
    """The headline figures, the confusion table, per-kind acceptance and the reliability table."""
    neg = report["accepted_negatives"]
    head = Table(title=f"verifier on {report['evaluated']} labeled pairs", title_justify="left")
    head.add_column("measure")
    head.add_column("value", justify="right")
    rows = [
        ("pairs (answerable / unanswerable)", f"{report['answerable']} / {report['unanswerable']}"),
        ("accepted-negative precision", _fmt(neg["precision"])),
        ("accepted-negative recall", _fmt(neg["recall"])),
        ("accepted negatives", f"{neg['predicted']} ({neg['hits']} right)"),
        ("accuracy (accepted as negative or not)", _fmt(report["accuracy"])),
        (
            "answerable-verdict precision / recall",
            f"{_fmt(report['answerable_verdict']['precision'])} / {_fmt(report['answerable_verdict']['recall'])}",
        ),
        ("ROC AUC (max P(yes) of the prompts)", _fmt(report["roc_auc"])),
        ("prompts agree", _fmt(report["prompt_agreement"])),
        ("expected calibration error (mean P(yes))", _fmt(report["calibration"]["ece"])),
        (
            "evidence vetoes (of them answerable)",
            f"{report['evidence_vetoes']['vetoed']} ({report['evidence_vetoes']['of_them_answerable']})",
        ),
    ]
    for name, per_prompt in report["per_prompt"].items():
        rows.append((f"ROC AUC {name}", _fmt(per_prompt["roc_auc"])))
    best = report["threshold_for_target"]
    target = report["target_precision"]
    if best is None:
        rows.append((f"threshold for precision {target}", "none reaches it"))
    else:
        rows.append(
            (
                f"threshold for precision {target}",
                f"P(yes) < {best['threshold']:.3f}: precision {best['precision']:.3f}, recall {best['recall']:.3f}",
            )
        )
    for label, value in rows:
        head.add_row(label, value)
    stdout.print(head)

    confusion = Table(title="confusion (rows: label, columns: combined verdict)", title_justify="left")
    confusion.add_column("label")
    for verdict in ("answerable", "undecided", "unanswerable"):
        confusion.add_column(verdict, justify="right")
    for truth, counts in report["confusion"].items():
        confusion.add_row(truth, *(str(n) for n in counts.values()))
    stdout.print(confusion)

    kinds = Table(title="by kind of pair", title_justify="left")
    for column in ("kind", "n", "label", "accepted as negative"):
        kinds.add_column(column)
    for kind, row in report["by_kind"].items():
        label = "answerable" if row["answerable"] else "unanswerable"
        kinds.add_row(escape(kind), str(row["n"]), label, f"{row['accepted_as_negative']:.0%}")
    stdout.print(kinds)

    reliability = Table(title="reliability (mean P(yes) of the prompts)", title_justify="left")
    for column in ("P(yes) bin", "pairs", "mean P(yes)", "share answerable"):
        reliability.add_column(column, justify="right")
    for b in report["calibration"]["bins"]:
        lo, hi = b["bin"]
        reliability.add_row(f"{lo:.1f}-{hi:.1f}", str(b["n"]), f"{b['mean_p']:.2f}", f"{b['observed']:.2f}")
    stdout.print(reliability)


def evaluate_verifier_command(
    pairs: Annotated[Path, typer.Option("--pairs", help="labeled JSONL: {page_id, query, answerable} a line")],
    pages: PagesOption,
    out: Annotated[Path, typer.Option("--out", help="a folder: verdicts.jsonl, report.json, calibration.png")],
    config: ConfigOption = None,
    target_precision: Annotated[
        float, typer.Option(help="the accepted-negative precision to find a threshold for")
    ] = 0.95,
    cache: Annotated[Path | None, typer.Option(help="response cache (default: OUT/cache.sqlite)")] = None,
    progress: ProgressOption = True,
) -> None:
    """Measure the negative verifier on labeled pairs: precision/recall of accepted negatives, and more."""
    results, errors = _run(pages, pairs, config, "negative", cache or out / "cache.sqlite", progress)
    write_results(results, out / "verdicts.jsonl")
    report = evaluate_verifier([r.model_dump(mode="json") for r in results], target_precision)
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    print_verifier_report(report)
    try:
        plot = write_calibration_plot(report, out / "calibration.png")
        stdout.print(f"reliability plot: {escape(str(plot))}")
    except DocrerankError as exc:  # matplotlib missing: the report stands without its plot
        stderr.print(f"[yellow]no plot[/yellow]: {escape(str(exc))}", soft_wrap=True)
    stdout.print(f"written to {escape(str(out))}")
    if errors:
        raise typer.Exit(1)
