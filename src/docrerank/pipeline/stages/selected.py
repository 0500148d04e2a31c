"""Stage 6, ``selected``: K verified negatives per positive (random, most similar or hardest); the run's
final output: positives, rephrasings and their selected negatives."""

from __future__ import annotations

from collections import defaultdict

from docrerank.pages import Page
from docrerank.pipeline.context import StageContext
from docrerank.pipeline.records import QueryRecord, Rejection
from docrerank.pipeline.selection import select_negatives
from docrerank.pipeline.stage import Stage, StageResult

__all__ = ["Selected"]


class Selected(Stage):
    name = "selected"
    reads = frozenset({"positive", "negative"})

    def fingerprint_parts(self, ctx: StageContext):
        return ctx.config.selected.model_dump(mode="json")

    def run(self, ctx: StageContext, pages: list[Page], upstream: list[QueryRecord]) -> StageResult:
        settings = ctx.config.selected
        negatives = defaultdict(list)
        for record in upstream:
            if record.kind == "negative":
                negatives[record.parent_id].append(record)
        kept = [r for r in upstream if r.kind != "negative"]
        rejected = []
        for record in [r for r in kept if r.kind == "positive"]:
            rng = ctx.rng("select", record.query_id)
            chosen, dropped = select_negatives(
                record, negatives.get(record.query_id, []), settings.k, settings.strategy, rng
            )
            kept += chosen
            reason = f"not among the {settings.k} selected"
            rejected += [Rejection(stage=self.name, reason=reason, record=r) for r in dropped]
        return kept, rejected
