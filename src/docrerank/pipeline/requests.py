"""The pipeline's side of the prompts: each generating stage's request built from the run's config. The
templates and builders themselves live in ``docrerank.prompts``.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any

from docrerank.backends import SamplingParams
from docrerank.pages.record import Page
from docrerank.pipeline.records import QueryRecord
from docrerank.prompts import (
    ControlledNegatives,
    NegativeQueries,
    PositiveQueries,
    Rephrasing,
    controlled_negative_request,
    freeform_negative_request,
    positive_request,
    rephrase_request,
)

if TYPE_CHECKING:
    from docrerank.pipeline.context import StageContext

__all__ = [
    "ControlledNegatives",
    "NegativeQueries",
    "PositiveQueries",
    "Rephrasing",
    "controlled_request",
    "freeform_request",
    "positive_request_for",
    "rephrase_request_for",
]


def _sampling(ctx: StageContext, stage: str, temperature: float, max_tokens: int, key: str) -> SamplingParams:
    # A per-item seed: a resumed run asks exactly what the first run asked, so the cache answers it.
    digest = hashlib.sha256(f"{ctx.config.seed}:{stage}:{key}".encode()).digest()
    seed = int.from_bytes(digest[:4], "big") % (2**31) if temperature > 0 else 0
    return SamplingParams(temperature=temperature, max_tokens=max_tokens, seed=seed)


def positive_request_for(ctx: StageContext, page: Page, use_image: bool):
    settings = ctx.config.positives
    return positive_request(
        _page_with_image(ctx, page) if use_image else page,
        n=settings.n,
        use_image=use_image,
        template=settings.template,
        max_page_chars=ctx.config.max_page_chars,
        sampling=_sampling(ctx, "positives", settings.temperature, settings.max_tokens, page.page_id),
        id=page.page_id,
    )


def _page_with_image(ctx: StageContext, page: Page) -> Any:
    from docrerank.prompts import PageContent

    return PageContent.from_page(page, store=ctx.store, image=True)


def rephrase_request_for(ctx: StageContext, page: Page, positive: QueryRecord, candidate: int = 0):
    settings = ctx.config.rephrased
    key = f"{positive.query_id}:{candidate}" if candidate else positive.query_id  # the first: as before candidates
    return rephrase_request(
        positive,
        page_text=page.text,
        template=settings.template,
        max_page_chars=ctx.config.max_page_chars,
        sampling=_sampling(ctx, "rephrase", settings.temperature, 256, key),
        id=positive.query_id,
    )


def freeform_request(ctx: StageContext, page: Page, positive: QueryRecord):
    settings = ctx.config.negative_candidates.freeform
    return freeform_negative_request(
        page.text if settings.show_page else None,
        positive,
        m=settings.m,
        template=settings.template,
        max_page_chars=ctx.config.max_page_chars,
        sampling=_sampling(ctx, "freeform", settings.temperature, settings.max_tokens, positive.query_id),
        id=positive.query_id,
    )


def controlled_request(ctx: StageContext, page: Page, positive: QueryRecord, prop):
    settings = ctx.config.negative_candidates.controlled
    return controlled_negative_request(
        positive,
        prop.name,
        prop.description,
        m=settings.per_property,
        template=settings.template,
        property_example=prop.example or None,
        page_text=page.text if settings.show_page else None,
        max_page_chars=ctx.config.max_page_chars,
        sampling=_sampling(
            ctx, f"controlled:{prop.name}", settings.temperature, settings.max_tokens, positive.query_id
        ),
        id=f"{positive.query_id}:{prop.name}",
    )
