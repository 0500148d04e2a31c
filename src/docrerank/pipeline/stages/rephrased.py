"""Stage 3, ``rephrased``: a seeded share of the positives reworded (other words, same question), filtered and
verified like a positive; the positives go on beside them. With ``candidates`` > 1 each chosen positive is
reworded several times and the wording that shares the fewest content words with the page is the one verified:
people's questions reuse fewer of a page's words than a small model's first rewording does."""

from __future__ import annotations

from docrerank.backends import Capability
from docrerank.pages import Page
from docrerank.pipeline import requests as stage_prompts
from docrerank.pipeline.context import StageContext
from docrerank.pipeline.filters import apply_filters, page_word_share
from docrerank.pipeline.records import QueryRecord, Rejection, query_id
from docrerank.pipeline.stage import Stage, StageResult, judged, parse_generation
from docrerank.prompts import load_prompt

__all__ = ["Rephrased", "least_copied"]


def least_copied(wordings: list[QueryRecord], page_text: str) -> tuple[QueryRecord, list[Rejection]]:
    """The wording that shares the fewest content words with the page (the first on a tie), and a rejection
    for each other one that says both shares."""
    shares = [page_word_share(r.text, page_text) for r in wordings]
    best = min(range(len(wordings)), key=shares.__getitem__)
    passed_over = [
        Rejection(
            stage="rephrased",
            reason=f"rephrasing shares {share:.2f} of its words with the page; the one kept {shares[best]:.2f}",
            record=record,
            page_id=record.page_id,
        )
        for k, (record, share) in enumerate(zip(wordings, shares, strict=True))
        if k != best
    ]
    return wordings[best], passed_over


class Rephrased(Stage):
    name = "rephrased"
    reads = frozenset({"positive"})
    adds = frozenset({"rephrased"})
    verifies = "rephrased"

    def needs(self, config):
        return {config.positives_verified.backend: {Capability.LOGPROBS}}

    def fingerprint_parts(self, ctx: StageContext):
        settings = ctx.config.rephrased.model_dump(mode="json")
        if settings["candidates"] == 1:  # one candidate asks what runs made before the setting existed: they resume
            del settings["candidates"]
        return [
            settings,
            load_prompt(ctx.config.rephrased.template).fingerprint,
            ctx.backends[ctx.config.rephrased.backend].identity(),
            ctx.verifier_fingerprint(ctx.config.positives_verified),
            ctx.config.filters.model_dump(mode="json"),
        ]

    def run(self, ctx: StageContext, pages: list[Page], upstream: list[QueryRecord]) -> StageResult:
        settings = ctx.config.rephrased
        # "rephrase": the seeds' key from before the stage took its name, so runs keep their choices
        chosen = [r for r in upstream if ctx.rng("rephrase", r.query_id).random() < settings.fraction]
        by_page = {page.page_id: page for page in pages}
        asked = [(r, i) for r in chosen for i in range(settings.candidates)]
        requests = [stage_prompts.rephrase_request_for(ctx, by_page[r.page_id], r, i) for r, i in asked]
        generations = ctx.backends[settings.backend].generate(requests)
        wordings: dict[str, list[QueryRecord]] = {r.query_id: [] for r in chosen}
        rejected = []
        for (positive, _), generation in zip(asked, generations, strict=True):
            parsed, rejection = parse_generation(stage_prompts.Rephrasing, generation, positive.page_id, self.name)
            if rejection:
                rejected.append(rejection)
                continue
            text = parsed.query.strip()
            wordings[positive.query_id].append(
                QueryRecord(
                    query_id=query_id(positive.page_id, "rephrased", text, positive.query_id),
                    page_id=positive.page_id,
                    kind="rephrased",
                    text=text,
                    answer=positive.answer,
                    parent_id=positive.query_id,
                    generator="llm:rephrase",
                )
            )
        candidates = []
        for positive in chosen:
            # the pipeline's filters, as for negatives: a rephrasing that is the positive again, or no question, goes
            survivors, dropped = apply_filters(positive, wordings[positive.query_id], ctx.config.filters)
            rejected += [r.model_copy(update={"stage": self.name, "reason": f"filter {r.reason}"}) for r in dropped]
            if not survivors:
                continue
            best, passed_over = least_copied(survivors, by_page[positive.page_id].text)
            candidates.append(best)
            rejected += passed_over
        judgements = ctx.positive_verifier.judge([(by_page[r.page_id], r) for r in candidates], "answerable")
        kept = list(upstream)  # the positives go on; rephrasings are added next to them
        for record, judgement in zip(candidates, judgements, strict=True):
            record = record.model_copy(update={"verdict": judgement.verdict})
            if judgement.accepted:
                kept.append(record)
            else:
                rejected.append(judged(self.name, judgement, record, f"rephrasing {judgement.reason}"))
        return kept, rejected
