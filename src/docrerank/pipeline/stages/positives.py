"""Stage 1, ``positives``: N candidate queries per page from the generator (or the given ones), each with its
short answer, filtered for form and checked against the page text."""

from __future__ import annotations

import hashlib

from docrerank.backends import Capability
from docrerank.pages import Page
from docrerank.pipeline import requests as stage_prompts
from docrerank.pipeline.context import StageContext
from docrerank.pipeline.filters import check_positive
from docrerank.pipeline.records import QueryRecord, Rejection, query_id
from docrerank.pipeline.stage import Stage, StageResult, parse_generation
from docrerank.prompts import load_prompt

__all__ = ["Positives"]


class Positives(Stage):
    name = "positives"
    adds = frozenset({"positive"})

    def needs(self, config):
        return {config.positives.backend: {Capability.IMAGES}} if config.positives.use_image == "always" else {}

    def fingerprint_parts(self, ctx: StageContext):
        settings = ctx.config.positives
        return [
            settings.model_dump(mode="json"),
            load_prompt(settings.template).fingerprint,
            ctx.backends[settings.backend].identity(),
            hashlib.sha256(settings.given.read_bytes()).hexdigest() if settings.given else None,
            ctx.config.filters.model_dump(mode="json"),
        ]

    def run(self, ctx: StageContext, pages: list[Page], upstream: list[QueryRecord]) -> StageResult:
        settings = ctx.config.positives
        if settings.given is not None:
            return [r for page in pages for r in ctx.given.positives[page.page_id]], []
        backend = ctx.backends[settings.backend]
        use_image = settings.use_image == "always" or (
            settings.use_image == "auto" and Capability.IMAGES in backend.capabilities
        )
        requests = [stage_prompts.positive_request_for(ctx, page, use_image) for page in pages]
        kept, rejected = [], []
        for page, generation in zip(pages, backend.generate(requests), strict=True):
            parsed, rejection = parse_generation(stage_prompts.PositiveQueries, generation, page.page_id, self.name)
            if rejection:
                rejected.append(rejection)
                continue
            made: set[str] = set()
            for item in parsed.queries:
                record = QueryRecord(
                    query_id=query_id(page.page_id, "positive", item.query),
                    page_id=page.page_id,
                    kind="positive",
                    text=item.query.strip(),
                    answer=item.answer.strip() or None,
                    generator="llm:positive",
                )
                if record.query_id in made:  # the model asked the same question twice (found by `inspect`)
                    rejected.append(Rejection(stage=self.name, reason="filter duplicate_positive", record=record))
                    continue
                made.add(record.query_id)
                decision = check_positive(record.text, page.text, ctx.config.filters, record.answer)
                if not decision.keep:
                    rejected.append(Rejection(stage=self.name, reason=f"filter {decision.reason}", record=record))
                else:
                    kept.append(record)
        return kept, rejected
