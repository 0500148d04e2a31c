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

__all__ = ["Expectation", "Judgement", "VerifySettings", "Verifier"]

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
        # the view is named only when focused: whole-page runs keep the fingerprints they had before it existed
        whole = {"page_view", "focus_chars"} if self.settings.page_view == "whole" else set()
        return {
            "settings": self.settings.model_dump(mode="json", exclude=whole),
            "prompts": [t.fingerprint for t in self.templates],
            "backend": self.backend.identity(),
        }

    def verdicts(self, pairs: Sequence[tuple[Page, str]]) -> list[Verdict]:
        """One verdict per (page, query) pair, in order; all prompts of all pairs go in one batch."""
        requests = [
            r
            for page, query in pairs
            for r in verify_requests(
                page,
                query,
                self.templates,
                max_page_chars=self.max_page_chars,
                page_view=self.settings.page_view,
                focus_chars=self.settings.focus_chars,
            )  # fmt: skip
        ]
        scores = self.backend.score_choices(requests)
        per_pair = len(self.templates)
        verdicts = []
        for start in range(0, len(scores), per_pair):
            group = scores[start : start + per_pair]
            errors = [s.error for s in group if not s.ok]
            p_yes = [s.probs["yes"] for s in group if s.ok]
            says_yes = [p >= self.settings.threshold for p in p_yes]
            complete = not errors and len(p_yes) == per_pair
            verdicts.append(
                Verdict(
                    p_yes=p_yes,
                    answerable=complete and all(says_yes),
                    unanswerable=complete and not any(says_yes),
                    agree=complete and len(set(says_yes)) == 1,
                    errors=errors,
                )
            )
        return verdicts

    def judge(
        self, pairs: Sequence[tuple[Page, QueryRecord]], expect: Expectation, *, evidence_rejects: bool = False
    ) -> list[Judgement]:
        """Accept each query as ``expect`` says it should be, or say why not.

        ``"answerable"`` (positives, rephrasings): every prompt says yes. ``"unanswerable"`` (negatives):
        every prompt says no, and with ``evidence_rejects`` an edited query (``changed_to``) whose new value
        the page states next to the query's other terms is rejected too.
        """
        verdicts = self.verdicts([(page, record.text) for page, record in pairs])
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
