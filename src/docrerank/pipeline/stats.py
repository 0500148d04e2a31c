"""What a run did, stage by stage: counts in and out, pass rates, rejection reasons, failures (requests that
got no answer, counted apart from rejections and retried by a rerun), verifier agreement,
per-property yield, tokens and throughput. Written to ``RUN/stats.json`` at the end of every run.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from docrerank.backends import Backend
from docrerank.pipeline.records import QueryRecord, Rejection
from docrerank.pipeline.rundir import RunDir
from docrerank.pipeline.stage import Stage
from docrerank.pipeline.stages import DEFAULT_STAGES

__all__ = ["run_stats"]


def _records(run: RunDir, stage: str) -> tuple[list[QueryRecord], list[Rejection]]:
    kept: list[QueryRecord] = []
    rejected: list[Rejection] = []
    for shard in run.shards(stage):
        kept += run.read_shard(stage, shard, QueryRecord)
        rejected += run.read_shard(stage, shard, Rejection, rejected=True)
    return kept, rejected


def run_stats(
    run: RunDir,
    backends: dict[str, Backend] | None = None,
    elapsed_s: float = 0.0,
    profile: dict[str, dict[str, float]] | None = None,
    pages_run: int = 0,
    stages: list[Stage] | None = None,
) -> dict[str, Any]:
    """Statistics of the run directory as it is now (all finished shards).

    With ``backends`` (at the end of a run), also their requests, tokens and the run's throughput; with
    ``profile`` (stage -> its seconds and backend counters in this run), where they went, also per page run.
    """
    counts: dict[str, Any] = {}
    agreement: dict[str, Any] = {}
    by_property: dict[str, Counter] = {}
    for step in stages or DEFAULT_STAGES:
        stage = step.name
        kept, dropped = _records(run, stage)
        failed = [r for r in dropped if r.failed]  # no answer, no judgement: apart from real rejections
        rejected = [r for r in dropped if not r.failed]
        kinds = Counter(r.kind for r in kept)
        counts[stage] = {
            "kept": len(kept),
            "kept_by_kind": dict(kinds),
            "rejected": len(rejected),
            "failed": len(failed),
            "pass_rate": round(len(kept) / (len(kept) + len(rejected)), 4) if kept or rejected else None,
            "rejection_reasons": dict(Counter(_short(r.reason) for r in rejected).most_common()),
            "failure_reasons": dict(Counter(_short(r.reason) for r in failed).most_common()),
        }
        if step.verifies:
            kind = step.verifies
            verdicts = [r.verdict for r in kept if r.kind == kind and r.verdict] + [
                r.record.verdict for r in rejected if r.record and r.record.kind == kind and r.record.verdict
            ]
            verdicts = [v for v in verdicts if not v.skipped]  # agreement needs every prompt's answer
            agreement[stage] = {
                "pairs": len(verdicts),
                "prompts_agree": round(sum(v.agree for v in verdicts) / len(verdicts), 4) if verdicts else None,
            }
        for record in kept:
            if record.kind == "negative":
                by_property.setdefault(record.made_by(), Counter())[stage] += 1
        if "negative" in step.adds:  # what each generator made, before the filters
            for record in kept + [r.record for r in rejected if r.record]:
                if record.kind == "negative":
                    by_property.setdefault(record.made_by(), Counter())["made"] += 1
    result = {
        "stages": counts,
        "verifier_agreement": agreement,
        "negatives_by_property": {name: _yield(counts) for name, counts in sorted(by_property.items())},
    }
    if backends is None:
        return result
    unique = {id(b): b for b in backends.values()}.values()  # names may share one backend
    requests = sum(b.stats.requests_sent for b in unique)
    return result | {
        "backends": {
            name: {
                "requests_sent": b.stats.requests_sent,
                "cache_hits": b.stats.cache_hits,
                "errors": b.stats.errors,
                "prompt_tokens": b.stats.prompt_tokens,
                "completion_tokens": b.stats.completion_tokens,
                "busy_s": round(b.stats.busy_s, 2),
            }
            for name, b in backends.items()
        },
        "wall_time_s": round(elapsed_s, 2),
        "requests_per_s": round(requests / elapsed_s, 3) if elapsed_s else None,
        "pages_run": pages_run,
        "pages_per_hour": round(3600 * pages_run / elapsed_s, 2) if elapsed_s and pages_run else None,
        "profile": {stage: _per_page(cost, pages_run) for stage, cost in (profile or {}).items()},
    }


def _per_page(cost: dict[str, float], pages: int) -> dict[str, Any]:
    """A stage's costs in this run, and each per page (what to cut to make more pages an hour)."""
    totals = {name: round(value, 2) for name, value in cost.items()}
    return totals | ({"per_page": {n: round(v / pages, 2) for n, v in cost.items()}} if pages else {})


def _yield(counts: Counter) -> dict[str, Any]:
    """A property's (or generator's) counts per stage, and its yield: verified negatives per candidate made."""
    made = counts.get("made", 0)
    verified = counts.get("negatives_verified", 0)
    return {**dict(counts), "yield": round(verified / made, 4) if made else None}


def _short(reason: str) -> str:
    """Reasons without their per-item details, so that they group (a failure by its kind: ``HTTP 500``)."""
    for prefix in ("generation failed: ", "verifier error: "):
        if reason.startswith(prefix):
            return prefix + _short(reason[len(prefix) :])
    return reason.split(" (")[0].split(": ")[0] if reason.startswith(("HTTP", "timed out")) else reason[:120]
