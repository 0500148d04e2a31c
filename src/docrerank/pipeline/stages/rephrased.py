"""Stage 3, ``rephrased``: a seeded share of the positives reworded (other words, same question), filtered and
verified like a positive; the positives go on beside them."""

from __future__ import annotations

from docrerank.backends import Capability
from docrerank.pages import Page
from docrerank.pipeline import requests as stage_prompts
from docrerank.pipeline.context import StageContext
from docrerank.pipeline.filters import apply_filters
from docrerank.pipeline.records import QueryRecord, query_id
from docrerank.pipeline.stage import Stage, StageResult, judged, parse_generation
from docrerank.prompts import load_prompt

__all__ = ["Rephrased"]


class Rephrased(Stage):
    name = "rephrased"
    reads = frozenset({"positive"})
    adds = frozenset({"rephrased"})
    verifies = "rephrased"

    def needs(self, config):
        return {config.positives_verified.backend: {Capability.LOGPROBS}}

    def fingerprint_parts(self, ctx: StageContext):
        settings = ctx.config.rephrased
        return [
            settings.model_dump(mode="json"),
            load_prompt(settings.template).fingerprint,
            ctx.backends[settings.backend].identity(),
            ctx.verifier_fingerprint(ctx.config.positives_verified),
            ctx.config.filters.model_dump(mode="json"),
        ]

    def run(self, ctx: StageContext, pages: list[Page], upstream: list[QueryRecord]) -> StageResult:
        settings = ctx.config.rephrased
        # "rephrase": the seeds' key from before the stage took its name, so runs keep their choices
        chosen = [r for r in upstream if ctx.rng("rephrase", r.query_id).random() < settings.fraction]
        by_page = {page.page_id: page for page in pages}
        requests = [stage_prompts.rephrase_request_for(ctx, by_page[r.page_id], r) for r in chosen]
        generations = ctx.backends[settings.backend].generate(requests)
        candidates, rejected = [], []
        for positive, generation in zip(chosen, generations, strict=True):
            parsed, rejection = parse_generation(stage_prompts.Rephrasing, generation, positive.page_id, self.name)
            if rejection:
                rejected.append(rejection)
                continue
            text = parsed.query.strip()
            record = QueryRecord(
                query_id=query_id(positive.page_id, "rephrased", text, positive.query_id),
                page_id=positive.page_id,
                kind="rephrased",
                text=text,
                answer=positive.answer,
                parent_id=positive.query_id,
                generator="llm:rephrase",
            )
            # the pipeline's filters, as for negatives: a rephrasing that is the positive again, or no question, goes
            survivors, dropped = apply_filters(positive, [record], ctx.config.filters)
            candidates += survivors
            rejected += [r.model_copy(update={"stage": self.name, "reason": f"filter {r.reason}"}) for r in dropped]
        judgements = ctx.positive_verifier.judge([(by_page[r.page_id], r) for r in candidates], "answerable")
        kept = list(upstream)  # the positives go on; rephrasings are added next to them
        for record, judgement in zip(candidates, judgements, strict=True):
            record = record.model_copy(update={"verdict": judgement.verdict})
            if judgement.accepted:
                kept.append(record)
            else:
                rejected.append(judged(self.name, judgement, record, f"rephrasing {judgement.reason}"))
        return kept, rejected
