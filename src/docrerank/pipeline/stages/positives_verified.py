"""Stage 2, ``positives_verified``: the verifier's prompts all say the page answers the query; the ``keep``
best of a page go on (given positives are trusted: the run starts at negatives)."""

from __future__ import annotations

from collections import defaultdict

from docrerank.backends import Capability
from docrerank.pages import Page
from docrerank.pipeline.context import StageContext
from docrerank.pipeline.records import QueryRecord, Rejection
from docrerank.pipeline.rulebased import EntityPool, find_spans
from docrerank.pipeline.stage import Stage, StageResult, judged

__all__ = ["PositivesVerified", "rank_positives"]


class PositivesVerified(Stage):
    name = "positives_verified"
    reads = frozenset({"positive"})
    verifies = "positive"

    def needs(self, config):
        return {config.positives_verified.backend: {Capability.LOGPROBS}}

    def fingerprint_parts(self, ctx: StageContext):
        settings = ctx.config.positives_verified
        return ctx.verifier_fingerprint(settings) | {"keep": settings.keep}

    def run(self, ctx: StageContext, pages: list[Page], upstream: list[QueryRecord]) -> StageResult:
        if ctx.config.positives.given is not None:
            return list(upstream), []
        by_page = {page.page_id: page for page in pages}
        judgements = ctx.positive_verifier.judge([(by_page[r.page_id], r) for r in upstream], "answerable")
        kept, rejected = [], []
        candidates = defaultdict(list)
        for record, judgement in zip(upstream, judgements, strict=True):
            record = record.model_copy(update={"verdict": judgement.verdict})
            if judgement.accepted:
                candidates[record.page_id].append(record)
            else:
                rejected.append(judged(self.name, judgement, record))
        settings = ctx.config.positives_verified
        for records in candidates.values():
            ranked = rank_positives(records, by_page[records[0].page_id].text, ctx.pool, settings.prefer)
            kept += ranked[: settings.keep]
            reason = f"not among the {settings.keep} kept"
            rejected += [Rejection(stage=self.name, reason=reason, record=r) for r in ranked[settings.keep :]]
        return kept, rejected


def rank_positives(records: list[QueryRecord], page_text: str, pool: EntityPool, prefer: str) -> list[QueryRecord]:
    """A page's verified positives, best first: with ``prefer="specific"`` those naming more values a
    negative can change (numbers, years, versions, names; up to 2 count), then by the lower of the prompts'
    P(yes); with ``"confident"`` by P(yes) alone."""

    def key(record: QueryRecord) -> tuple:
        values = len(find_spans(record.text, page_text, pool)) if prefer == "specific" else 0
        return (-min(values, 2), -min(record.verdict.p_yes), record.query_id)

    return sorted(records, key=key)
