"""The answerability verifier: "can this page answer this query?", asked with two differently worded
prompts, judged from the yes/no probabilities at the next token.

The same verifier serves positive verification (keep when every prompt says yes), negative verification
(keep when every prompt says no) and, later, ``docrerank verify`` and the check of mined negatives. The
page text comes first in both prompts, so questions about one page share its evaluated prefix.
"""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import BaseModel, ConfigDict, Field

from docrerank.backends import Backend, Capability
from docrerank.pages.record import Page
from docrerank.pipeline.records import Verdict
from docrerank.prompts import load_prompt, verify_requests

__all__ = ["VerifySettings", "Verifier"]


class VerifySettings(BaseModel):
    """How answerability is judged."""

    model_config = ConfigDict(extra="forbid")

    backend: str = Field("verifier", description="the name of a backend in the config's `backends`")
    templates: tuple[str, ...] = Field(("verify_a", "verify_b"), min_length=1, description="prompt names or paths")
    threshold: float = Field(0.5, gt=0, lt=1, description="P(yes) at or above it is a yes")


class Verifier:
    """Judges (page, query) pairs with every configured prompt on one backend."""

    def __init__(self, backend: Backend, settings: VerifySettings):
        backend.require(Capability.LOGPROBS, stage="verification")
        self.backend = backend
        self.settings = settings
        self.templates = [load_prompt(name) for name in settings.templates]

    @property
    def fingerprint_parts(self) -> dict:
        return {
            "settings": self.settings.model_dump(mode="json"),
            "prompts": [t.fingerprint for t in self.templates],
            "backend": self.backend.identity(),
        }

    def verdicts(self, pairs: Sequence[tuple[Page, str]]) -> list[Verdict]:
        """One verdict per (page, query) pair, in order; all prompts of all pairs go in one batch."""
        requests = [r for page, query in pairs for r in verify_requests(page, query, self.templates)]
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
