"""The answerability verifier: "can this page answer this query?", asked with two differently worded
prompts, judged from the yes/no probabilities at the next token.

The same verifier serves positive verification (keep when every prompt says yes), negative verification
(keep when every prompt says no, and the cheap evidence check finds no sign that the page answers an
edited query after all), ``docrerank verify`` / ``evaluate-verifier``, and later the check of mined
negatives: ``Verifier.judge`` is the one place that decides. The page text comes first in both prompts, so
questions about one page share its evaluated prefix.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from docrerank.backends import Backend, Capability
from docrerank.pages.record import Page
from docrerank.pipeline.evidence import PageText, check_evidence
from docrerank.pipeline.records import Evidence, QueryRecord, Verdict
from docrerank.prompts import load_prompt, verify_requests
from docrerank.prompts.focus import DEFAULT_FOCUS_CHARS, PageView
from docrerank.prompts.requests import DEFAULT_MAX_PAGE_CHARS

__all__ = ["Expectation", "Judgement", "VerifySettings", "Verifier", "verifier_fingerprint"]

Expectation = Literal["answerable", "unanswerable"]


class VerifySettings(BaseModel):
    """How answerability is judged."""

    model_config = ConfigDict(extra="forbid")

    backend: str = Field("verifier", description="the name of a backend in the config's `backends`")
    templates: tuple[str, ...] = Field(("verify_a", "verify_b"), min_length=1, description="prompt names or paths")
    threshold: float = Field(0.5, gt=0, lt=1, description="P(yes) at or above it is a yes")
    page_view: PageView = Field(
        "whole", description="whole: the page's head (max_page_chars); focused: its passages nearest the query"
    )
    focus_chars: int = Field(DEFAULT_FOCUS_CHARS, ge=200, description="page text shown by the focused view")
    stop_early: bool = Field(
        True,
        description="in a pipeline run, ask a query's later prompts only while it can still be accepted: the same "
        "verdicts for fewer requests (a rejected query's record lists the P(yes) asked)",
    )


@dataclass(frozen=True)
class Judgement:
    """The verifier's decision about one query: accepted as what it was expected to be, or why not."""

    verdict: Verdict
    evidence: Evidence | None
    accepted: bool
    reason: str | None  # why it was not accepted

    @property
    def failed(self) -> bool:
        """No judgement at all: a verification request got no answer (a rerun asks again)."""
        return bool(self.verdict.errors)


def verifier_fingerprint(backend: Backend, settings: VerifySettings) -> dict:
    """What decides a verifier's judgements: its settings, prompts and backend."""
    # the view is named only when focused: whole-page runs keep the fingerprints they had before it existed;
    # stopping early accepts the same queries
    unnamed = {"stop_early"} | ({"page_view", "focus_chars"} if settings.page_view == "whole" else set())
    return {
        "settings": settings.model_dump(mode="json", exclude=unnamed),
        "prompts": [load_prompt(name).fingerprint for name in settings.templates],
        "backend": backend.identity(),
    }


class Verifier:
    """Judges (page, query) pairs with every configured prompt on one backend."""

    def __init__(self, backend: Backend, settings: VerifySettings, max_page_chars: int = DEFAULT_MAX_PAGE_CHARS):
        backend.require(Capability.LOGPROBS, stage="verification")
        self.backend = backend
        self.settings = settings
        self.max_page_chars = max_page_chars
        self.templates = [load_prompt(name) for name in settings.templates]

    @property
    def fingerprint_parts(self) -> dict:
        return verifier_fingerprint(self.backend, self.settings)

    def verdicts(self, pairs: Sequence[tuple[Page, str]], decide: Expectation | None = None) -> list[Verdict]:
        """One verdict per (page, query) pair, in order; all prompts of all pairs go in one batch.

        With ``decide``, the prompts go one after another and a pair's later prompts are not asked once an
        earlier one has gone against ``decide`` (a yes for a query expected unanswerable, a no for one expected
        answerable): the same acceptance for fewer requests (the rejected verdict lists fewer P(yes)).
        """
        p_yes: list[list[float]] = [[] for _ in pairs]
        errors: list[list[str]] = [[] for _ in pairs]
        undecided = list(range(len(pairs)))
        for templates in [self.templates] if decide is None else [[t] for t in self.templates]:
            requests = [r for i in undecided for r in self._requests(*pairs[i], templates)]
            scores = iter(self.backend.score_choices(requests))
            still = []
            for i in undecided:
                for score in (next(scores) for _ in templates):
                    if score.ok:
                        p_yes[i].append(score.probs["yes"])
                    else:
                        errors[i].append(score.error)
                if errors[i]:  # no judgement: a rerun asks again
                    continue
                says_yes = [p >= self.settings.threshold for p in p_yes[i]]
                against = any(says_yes) if decide == "unanswerable" else not all(says_yes)
                if decide is None or not against:
                    still.append(i)
            undecided = still
        return [self._verdict(p, e) for p, e in zip(p_yes, errors, strict=True)]

    def _requests(self, page: Page, query: str, templates) -> list:
        return verify_requests(
            page,
            query,
            templates,
            max_page_chars=self.max_page_chars,
            page_view=self.settings.page_view,
            focus_chars=self.settings.focus_chars,
        )

    def _verdict(self, p_yes: list[float], errors: list[str]) -> Verdict:
        says_yes = [p >= self.settings.threshold for p in p_yes]
        complete = not errors and len(p_yes) == len(self.templates)
        return Verdict(
            p_yes=p_yes,
            answerable=complete and all(says_yes),
            unanswerable=complete and not any(says_yes),
            agree=complete and len(set(says_yes)) == 1,
            errors=errors,
            skipped=0 if errors else len(self.templates) - len(p_yes),
        )

    def judge(
        self,
        pairs: Sequence[tuple[Page, QueryRecord]],
        expect: Expectation,
        *,
        evidence_rejects: bool = False,
        every_prompt: bool = False,
    ) -> list[Judgement]:
        """Accept each query as ``expect`` says it should be, or say why not.

        ``"answerable"`` (positives, rephrasings): every prompt says yes. ``"unanswerable"`` (negatives):
        every prompt says no, and with ``evidence_rejects`` an edited query (``changed_to``) whose new value
        the page states next to the query's other terms is rejected too. With ``settings.stop_early``, a query's
        later prompts are asked only while it can still be accepted, unless ``every_prompt`` (a verifier's
        measurement needs all its P(yes)).
        """
        pairs_text = [(page, record.text) for page, record in pairs]
        stop_early = self.settings.stop_early and not every_prompt
        verdicts = self.verdicts(pairs_text, decide=expect if stop_early else None)
        page_texts: dict[str, PageText] = {}  # each page tokenised once
        judgements = []
        for (page, record), verdict in zip(pairs, verdicts, strict=True):
            evidence = None
            if expect == "unanswerable" and record.changed_to:
                page_text = page_texts.setdefault(page.page_id, PageText(page.text))
                evidence = check_evidence(record, page_text)
            if verdict.errors:
                reason = f"verifier error: {verdict.errors[0]}"
            elif expect == "answerable" and not verdict.answerable:
                reason = "not answerable by every verification prompt"
            elif expect == "unanswerable" and not verdict.unanswerable:
                reason = "not judged unanswerable by every verification prompt"
            elif evidence is not None and evidence.answers and evidence_rejects:
                reason = f"evidence: {evidence.reason}"
            else:
                reason = None
            judgements.append(Judgement(verdict, evidence, accepted=reason is None, reason=reason))
        return judgements
