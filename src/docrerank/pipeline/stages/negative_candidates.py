"""Stage 4, ``negative_candidates``: each positive's hard negative candidates from three generators, free-form
(LLM), property-controlled (LLM) and rule-based (a value of the query swapped for another of the same kind),
with the negatives a given positive brings; filtered for form and nearness to the positive."""

from __future__ import annotations

from collections import defaultdict

from docrerank.pages import Page
from docrerank.pipeline import requests as stage_prompts
from docrerank.pipeline.context import StageContext
from docrerank.pipeline.filters import apply_filters
from docrerank.pipeline.properties import get_property_set
from docrerank.pipeline.records import QueryRecord, Rejection
from docrerank.pipeline.rulebased import rule_based_negatives
from docrerank.pipeline.stage import Stage, StageResult, parse_generation
from docrerank.prompts import load_prompt

__all__ = ["NegativeCandidates", "controlled_edit_problem"]


class NegativeCandidates(Stage):
    name = "negative_candidates"
    reads = frozenset({"positive"})
    adds = frozenset({"negative"})

    def enabled(self, config) -> bool:
        section = config.negative_candidates
        generators = (section.freeform, section.controlled, section.rulebased)
        # given positives may bring their negatives
        return any(g.enabled for g in generators) or config.positives.given is not None

    def fingerprint_parts(self, ctx: StageContext):
        config = ctx.config
        freeform, controlled = config.negative_candidates.freeform, config.negative_candidates.controlled
        return [
            freeform.model_dump(mode="json"),
            load_prompt(freeform.template).fingerprint,
            ctx.backends[freeform.backend].identity(),
            controlled.model_dump(mode="json"),
            load_prompt(controlled.template).fingerprint,
            ctx.backends[controlled.backend].identity(),
            config.negative_candidates.rulebased.model_dump(mode="json"),
            config.filters.model_dump(mode="json"),
            get_property_set(controlled.property_set, config.property_sets).model_dump(),
        ]

    def run(self, ctx: StageContext, pages: list[Page], upstream: list[QueryRecord]) -> StageResult:
        config = ctx.config
        by_page = {page.page_id: page for page in pages}
        positives = [r for r in upstream if r.kind == "positive"]
        candidates, rejected = self._llm_negatives(ctx, by_page, positives)
        for positive in positives:
            for text in ctx.given.negatives.get(positive.query_id, []):
                candidates[positive.query_id].append(QueryRecord.negative_of(positive, text, "given"))
        rulebased = config.negative_candidates.rulebased
        if rulebased.enabled:
            for positive in positives:
                rng = ctx.rng("rule", positive.query_id)
                page = by_page[positive.page_id]
                candidates[positive.query_id] += rule_based_negatives(
                    positive, page.text, ctx.pool, rulebased.m, rng, document=page.doc_id
                )
        kept = list(upstream)  # positives and rephrasings pass through
        for positive in positives:
            survivors, dropped = apply_filters(positive, candidates.get(positive.query_id, []), config.filters)
            kept += survivors
            rejected += [r.model_copy(update={"stage": self.name, "reason": f"filter {r.reason}"}) for r in dropped]
        return kept, rejected

    def _llm_negatives(self, ctx: StageContext, pages: dict[str, Page], positives: list[QueryRecord]):
        """Free-form and property-controlled negatives, one batch per backend."""
        candidates: dict[str, list[QueryRecord]] = defaultdict(list)
        rejected: list[Rejection] = []
        freeform, controlled = ctx.config.negative_candidates.freeform, ctx.config.negative_candidates.controlled
        jobs: list[tuple[str, QueryRecord, str | None]] = []
        requests = []
        if freeform.enabled:
            for positive in positives:
                jobs.append(("freeform", positive, None))
                requests.append(stage_prompts.freeform_request(ctx, pages[positive.page_id], positive))
        if controlled.enabled:
            property_set = get_property_set(controlled.property_set, ctx.config.property_sets)
            for spec in property_set.properties:
                if controlled.properties is not None and spec.name not in controlled.properties:
                    continue
                for positive in positives:
                    if not spec.applies_to(positive.text):
                        reason = f"controlled: not asked, the positive has no {spec.name} to change (applies_when)"
                        rejected.append(Rejection(stage=self.name, reason=reason, page_id=positive.page_id))
                        continue
                    jobs.append(("controlled", positive, spec.name))
                    requests.append(stage_prompts.controlled_request(ctx, pages[positive.page_id], positive, spec))
        by_backend: dict[str, list[int]] = defaultdict(list)
        for index, (kind, _, _) in enumerate(jobs):
            by_backend[freeform.backend if kind == "freeform" else controlled.backend].append(index)
        generations: list = [None] * len(jobs)
        for name, indices in by_backend.items():
            answers = ctx.backends[name].generate([requests[i] for i in indices])
            for index, generation in zip(indices, answers, strict=True):
                generations[index] = generation
        for (kind, positive, prop), generation in zip(jobs, generations, strict=True):
            model = stage_prompts.NegativeQueries if kind == "freeform" else stage_prompts.ControlledNegatives
            parsed, rejection = parse_generation(model, generation, positive.page_id, self.name)
            if rejection:
                rejected.append(rejection)
                continue
            for item in parsed.queries:
                extra = {}
                if kind == "controlled":
                    extra = {
                        "property": prop,
                        "changed_from": item.old_value or None,
                        "changed_to": item.new_value or None,
                    }
                record = QueryRecord.negative_of(positive, item.query.strip(), f"llm:{kind}", **extra)
                problem = controlled_edit_problem(positive, record) if kind == "controlled" else None
                if problem:
                    rejected.append(Rejection(stage=self.name, reason=problem, record=record))
                else:
                    candidates[positive.query_id].append(record)
        return candidates, rejected


def controlled_edit_problem(positive: QueryRecord, record: QueryRecord) -> str | None:
    """Why a controlled edit is not the one-property change it claims to be, or None."""
    old, new = (record.changed_from or "").strip().lower(), (record.changed_to or "").strip().lower()
    if not old or not new:
        return "controlled edit: no old or new value given"
    if old == new:
        return "controlled edit: the new value equals the old one"
    if old not in positive.text.lower():
        return "controlled edit: the old value is not in the positive query"
    if new not in record.text.lower():
        return "controlled edit: the new value is not in the edited query"
    return None
