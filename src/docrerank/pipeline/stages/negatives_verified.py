"""Stage 5, ``negatives_verified``: the verifier's prompts all say the page does not answer the negative, and
the evidence check does not find an edited value stated on the page next to the query's terms."""

from __future__ import annotations

from docrerank.backends import Capability
from docrerank.pages import Page
from docrerank.pipeline.context import StageContext
from docrerank.pipeline.records import QueryRecord
from docrerank.pipeline.stage import Stage, StageResult, judged

__all__ = ["NegativesVerified"]


class NegativesVerified(Stage):
    name = "negatives_verified"
    reads = frozenset({"negative"})
    verifies = "negative"

    def needs(self, config):
        return {config.negatives_verified.backend: {Capability.LOGPROBS}}

    def fingerprint_parts(self, ctx: StageContext):
        settings = ctx.config.negatives_verified
        return ctx.verifier_fingerprint(settings) | {"evidence_rejects": settings.evidence_rejects}

    def run(self, ctx: StageContext, pages: list[Page], upstream: list[QueryRecord]) -> StageResult:
        by_page = {page.page_id: page for page in pages}
        negatives = [r for r in upstream if r.kind == "negative"]
        kept = [r for r in upstream if r.kind != "negative"]
        rejected = []
        judgements = ctx.negative_verifier.judge(
            [(by_page[r.page_id], r) for r in negatives],
            "unanswerable",
            evidence_rejects=ctx.config.negatives_verified.evidence_rejects,
        )
        for record, judgement in zip(negatives, judgements, strict=True):
            record = record.model_copy(update={"verdict": judgement.verdict, "evidence": judgement.evidence})
            if judgement.accepted:
                kept.append(record)
            else:
                rejected.append(judged(self.name, judgement, record))
        return kept, rejected
