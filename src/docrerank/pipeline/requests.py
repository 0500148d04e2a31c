"""The pipeline's side of the prompts: each stage's request built from the run's config, and what a
stage's fingerprint is made of. The templates and builders themselves live in ``docrerank.prompts``.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any

from docrerank.backends import SamplingParams
from docrerank.pages.record import Page
from docrerank.pipeline.properties import get_property_set
from docrerank.pipeline.records import QueryRecord
from docrerank.prompts import (
    ControlledNegatives,
    NegativeQueries,
    PositiveQueries,
    Rephrasing,
    controlled_negative_request,
    freeform_negative_request,
    load_prompt,
    positive_request,
    rephrase_request,
)

if TYPE_CHECKING:
    from docrerank.pipeline.generate import _Context

__all__ = [
    "ControlledNegatives",
    "NegativeQueries",
    "PositiveQueries",
    "Rephrasing",
    "controlled_request",
    "freeform_request",
    "positive_request_for",
    "rephrase_request_for",
    "stage_fingerprint_parts",
]


def _sampling(ctx: _Context, stage: str, temperature: float, max_tokens: int, key: str) -> SamplingParams:
    # A per-item seed: a resumed run asks exactly what the first run asked, so the cache answers it.
    digest = hashlib.sha256(f"{ctx.config.seed}:{stage}:{key}".encode()).digest()
    seed = int.from_bytes(digest[:4], "big") % (2**31) if temperature > 0 else 0
    return SamplingParams(temperature=temperature, max_tokens=max_tokens, seed=seed)


def positive_request_for(ctx: _Context, page: Page, use_image: bool):
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


def _page_with_image(ctx: _Context, page: Page) -> Any:
    from docrerank.prompts import PageContent

    return PageContent.from_page(page, store=ctx.store, image=True)


def rephrase_request_for(ctx: _Context, page: Page, positive: QueryRecord):
    settings = ctx.config.rephrase
    return rephrase_request(
        positive,
        page_text=page.text,
        template=settings.template,
        max_page_chars=ctx.config.max_page_chars,
        sampling=_sampling(ctx, "rephrase", settings.temperature, 256, positive.query_id),
        id=positive.query_id,
    )


def freeform_request(ctx: _Context, page: Page, positive: QueryRecord):
    settings = ctx.config.negatives_freeform
    return freeform_negative_request(
        page.text if settings.show_page else None,
        positive,
        m=settings.m,
        template=settings.template,
        max_page_chars=ctx.config.max_page_chars,
        sampling=_sampling(ctx, "freeform", settings.temperature, settings.max_tokens, positive.query_id),
        id=positive.query_id,
    )


def controlled_request(ctx: _Context, page: Page, positive: QueryRecord, prop):
    settings = ctx.config.negatives_controlled
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


def stage_fingerprint_parts(ctx: _Context) -> dict[str, Any]:
    """Per stage: its settings, its prompt templates' fingerprints and its backends' identities."""
    config = ctx.config

    def backend(name: str) -> dict:
        return ctx.backends[name].identity()

    return {
        "positives": [
            config.positives.model_dump(mode="json"),
            load_prompt(config.positives.template).fingerprint,
            backend(config.positives.backend),
            hashlib.sha256(config.positives.given.read_bytes()).hexdigest() if config.positives.given else None,
            config.filters.model_dump(mode="json"),
        ],
        "positives_verified": ctx.positive_verifier.fingerprint_parts | {"keep": config.positive_verification.keep},
        "rephrased": [
            config.rephrase.model_dump(mode="json"),
            load_prompt(config.rephrase.template).fingerprint,
            backend(config.rephrase.backend),
            ctx.positive_verifier.fingerprint_parts,
            config.filters.model_dump(mode="json"),
        ],
        "negative_candidates": [
            config.negatives_freeform.model_dump(mode="json"),
            load_prompt(config.negatives_freeform.template).fingerprint,
            backend(config.negatives_freeform.backend),
            config.negatives_controlled.model_dump(mode="json"),
            load_prompt(config.negatives_controlled.template).fingerprint,
            backend(config.negatives_controlled.backend),
            config.negatives_rulebased.model_dump(mode="json"),
            config.filters.model_dump(mode="json"),
            get_property_set(config.negatives_controlled.property_set, config.property_sets).model_dump(),
        ],
        "negatives_verified": ctx.negative_verifier.fingerprint_parts
        | {"evidence_rejects": config.negative_verification.evidence_rejects},
        "selected": config.selection.model_dump(mode="json"),
    }
