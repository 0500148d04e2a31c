"""``docrerank stats``: a run's counts per stage, per-property yield, and the quality of its negatives."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from docrerank.embeddings import DEFAULT_EMBEDDER
from docrerank.pipeline.config import PipelineConfig
from docrerank.pipeline.costs import run_costs
from docrerank.pipeline.export import read_final
from docrerank.pipeline.measures import quality_measures
from docrerank.pipeline.rundir import RunDir
from docrerank.pipeline.stages import STAGES
from docrerank.pipeline.stats import run_stats

__all__ = ["print_quality", "print_stats", "stats_command"]

stdout = Console()


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"


def print_stats(stats: dict[str, Any]) -> None:
    """Counts and pass rates per stage, top rejection reasons, verifier agreement, per-property yield; after a
    run, its time and where it went per page."""
    table = Table(title="generation run", title_justify="left")
    for column in ("stage", "kept", "rejected", "failed", "pass rate", "top rejection reasons"):
        table.add_column(column, overflow="fold")
    failed = 0
    for stage in STAGES:
        row = stats["stages"][stage]
        kinds = ", ".join(f"{n} {k}" for k, n in row["kept_by_kind"].items())
        reasons = escape("; ".join(f"{n}× {r}" for r, n in list(row["rejection_reasons"].items())[:3]))
        failed += row.get("failed", 0)  # stats.json of older runs had no failure count
        table.add_row(
            stage,
            f"{row['kept']} ({kinds})" if kinds else "0",
            str(row["rejected"]),
            str(row.get("failed", 0)),
            _rate(row["pass_rate"]),
            reasons,
        )
    stdout.print(table)
    if failed:
        reasons = {r: n for row in stats["stages"].values() for r, n in row.get("failure_reasons", {}).items()}
        top = "; ".join(f"{n}× {r}" for r, n in sorted(reasons.items(), key=lambda item: -item[1])[:3])
        stdout.print(
            f"{failed} items got no answer from their model ({top}): run the same command again to retry them "
            "(answered requests come from the run's cache)",
            markup=False,
        )
    agreement = ", ".join(
        f"{stage}: {v['prompts_agree']:.0%} of {v['pairs']}"
        for stage, v in stats["verifier_agreement"].items()
        if v["prompts_agree"] is not None
    )
    stdout.print(f"verification prompts agree: {agreement or '-'}")
    yields = Table(title="negatives by property (or generator)", title_justify="left")
    for column in ("property", "made", "after filters", "verified", "selected", "yield"):
        yields.add_column(column, justify="left" if column == "property" else "right")
    for name, counts in stats["negatives_by_property"].items():
        cells = [str(counts.get(key, 0)) for key in ("made", "negative_candidates", "negatives_verified", "selected")]
        yields.add_row(escape(name), *cells, _rate(counts["yield"]))
    stdout.print(yields)
    if "wall_time_s" in stats:
        stdout.print(f"wall time {stats['wall_time_s']:.0f} s, {stats['requests_per_s']} requests/s")
    per_page = {stage: cost["per_page"] for stage, cost in stats.get("profile", {}).items() if "per_page" in cost}
    if per_page:  # where this run's time went: what to cut for more pages an hour
        spent = ", ".join(
            f"{stage} {cost['seconds']:.1f} s ({cost['requests_sent']:g} requests, {cost['completion_tokens']:.0f} "
            "decoded tokens)"
            for stage, cost in per_page.items()
            if cost["seconds"] >= 0.05
        )
        stdout.print(f"per page ({stats['pages_per_hour']} pages/hour): {spent}", markup=False)
    if stats.get("cost", {}).get("stages"):
        print_costs(stats["cost"])


def print_costs(cost: dict[str, Any]) -> None:
    """What each stage cost over every finished shard and attempt: requests, retries, cache hits, tokens,
    seconds, money and GPU-hours (the config's prices), in all and per page."""
    table = Table(title="cost (every shard and attempt; money and GPU-hours from the config's prices)",
                  title_justify="left")  # fmt: skip
    priced = cost["total"].get("money", 0) or cost["total"].get("gpu_hours", 0)  # no prices: no money columns
    columns = ("requests_sent", "retries", "cache_hits", "prompt_tokens", "completion_tokens", "seconds")
    columns += ("money", "gpu_hours") if priced else ()
    table.add_column("stage")
    for column in (*columns, "pages", "tokens/page", *(("money/page",) if priced else ())):
        table.add_column(column.replace("_", " "), justify="right")
    rows = [*cost["stages"].items(), ("all stages", cost["total"])]
    for stage, row in rows:
        per_page = row.get("per_page", {})
        cells = [f"{row.get(c, 0):,.4g}" if c in ("money", "gpu_hours") else f"{row.get(c, 0):,.0f}" for c in columns]
        cells += [str(row.get("pages", "")), f"{per_page['tokens']:,.0f}" if "tokens" in per_page else ""]
        cells += [f"{per_page.get('money', 0):.4g}" if per_page else ""] if priced else []
        table.add_row(stage, *cells)
    stdout.print(table)


def print_quality(quality: dict[str, Any]) -> None:
    """Hardness (similarity of each negative to its positive) and diversity (among a positive's negatives)."""
    table = Table(
        title=f"hardness of {quality['negatives']} negatives (mean similarity to their positive)", title_justify="left"
    )
    names = ("lexical", "char", "embedding")
    for column in ("made by", "n", *names):
        table.add_column(column, justify="left" if column == "made by" else "right")
    for group, scores in quality["hardness"].items():
        cells = [f"{scores[n]['mean']:.2f}" if scores.get(n) else "-" for n in names]
        table.add_row(group, str(scores["lexical"]["n"]), *cells)
    stdout.print(table)
    diversity = quality["diversity"]
    parts = [
        f"{name} {diversity[name]['mean']:.2f}"
        for name in ("distinct_1", "distinct_2", "pairwise_lexical", "pairwise_embedding")
        if diversity.get(name)
    ]
    stdout.print(
        f"diversity over {diversity['positives_with_2_or_more']} positives with 2+ negatives: "
        f"{', '.join(parts) or '-'}; corpus distinct-2 {diversity['corpus_distinct_2']}"
    )


def stats_command(
    run_dir: Annotated[Path, typer.Argument(help="a finished run directory (docrerank generate --run-dir)")],
    embedder: Annotated[
        str, typer.Option(help="sentence-transformers model for embedding similarity (path or Hub name)")
    ] = DEFAULT_EMBEDDER,
    embeddings: Annotated[bool, typer.Option(help="compute embedding similarities (loads the embedder)")] = True,
) -> None:
    """Print a run's stats and the hardness and diversity of its negatives; writes them to RUN/stats.json."""
    records, applied = read_final(run_dir)  # refuses an unfinished run, with the command that resumes it
    run = RunDir(run_dir)
    stored_path = run.root / "stats.json"
    stats = json.loads(stored_path.read_text()) if stored_path.is_file() else {}
    stats |= run_stats(run)
    stats["quality"] = quality_measures(records, embedder if embeddings else None)
    stats["corrections"] = applied.as_dict() if applied else None
    if (run.root / "config.yaml").is_file():  # every finished shard's cost, priced with the run's config
        stats["cost"] = run_costs(run, PipelineConfig.from_yaml(run.root / "config.yaml"), STAGES)
    run.write_json("stats.json", stats)
    print_stats(stats)
    print_quality(stats["quality"])
    if applied and applied.in_force:
        kinds = ", ".join(f"{count} {action}" for action, count in sorted(applied.by_action.items()))
        stdout.print(
            f"corrections in force: {applied.in_force} ({kinds}); applied: {applied.dropped} dropped, "
            f"{applied.added} rejected negatives kept, {applied.edited} edited; "
            f"{len(applied.unmatched)} no longer match an item of the run"
        )
        for correction in applied.unmatched:
            stdout.print(f"  not matched: {correction.action} {correction.query!r} (page {correction.page_id})")
