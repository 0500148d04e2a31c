"""The records the generation pipeline passes between stages and writes to its run directory.

Every query the pipeline makes or is given is a ``QueryRecord``; what a stage decides about it is added as
new fields (``verdict``), and what a stage rejects is kept as a ``Rejection`` with the stage and the reason.
"""

from __future__ import annotations

import hashlib
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["Evidence", "QueryKind", "QueryRecord", "Rejection", "Verdict", "query_id"]

QueryKind = Literal["positive", "rephrased", "negative"]


def query_id(page_id: str, kind: str, text: str, parent_id: str | None = None) -> str:
    """A stable id: the same query on the same page from the same parent gets the same id in every run."""
    blob = "\x00".join([page_id, kind, parent_id or "", " ".join(text.split())])
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


class Evidence(BaseModel):
    """The cheap evidence check of an edited query: does the new value appear on the page?

    ``found`` lists where the new value (``value``) occurs in the page text; ``answers`` is the check's
    guess that the page answers the edited query after all (the value sits next to the query's other
    key terms), which makes a negative suspect.
    """

    model_config = ConfigDict(extra="forbid")

    value: str
    found: list[str] = Field(default_factory=list, description="page text snippets around each occurrence")
    answers: bool = False
    reason: str = ""


class Verdict(BaseModel):
    """What the verifier said about one (page, query) pair."""

    model_config = ConfigDict(extra="forbid")

    p_yes: list[float] = Field(description="P(the page answers the query), one per verification prompt")
    answerable: bool = Field(description="every prompt says yes (p >= threshold)")
    unanswerable: bool = Field(description="every prompt says no (p < threshold)")
    agree: bool = Field(description="the prompts give the same verdict")
    errors: list[str] = Field(default_factory=list)
    skipped: int = Field(0, description="prompts not asked: an earlier one had already decided against the query")


class QueryRecord(BaseModel):
    """One query about one page: a positive (the page answers it), a rephrased positive, or a negative."""

    model_config = ConfigDict(extra="forbid")

    query_id: str
    page_id: str
    kind: QueryKind
    text: str
    answer: str | None = Field(None, description="the short answer, for positives")
    parent_id: str | None = Field(None, description="the positive a negative or a rephrasing comes from")
    generator: str = Field(
        description="what made it: given, llm:positive, llm:freeform, llm:controlled, rule:year, ..."
    )
    property: str | None = Field(None, description="the property a controlled or rule-based edit changed")
    changed_from: str | None = None
    changed_to: str | None = None
    verdict: Verdict | None = None
    evidence: Evidence | None = None
    corrected: Literal["edited", "unanswerable"] | None = Field(
        None, description="a person's correction (corrections.jsonl): the text edited, or a rejected negative kept"
    )

    def made_by(self) -> str:
        """What made it, for per-property counts: ``llm:controlled:<property>``, else the generator."""
        if self.generator == "llm:controlled" and self.property:
            return f"{self.generator}:{self.property}"
        return self.generator

    @classmethod
    def negative_of(cls, positive: QueryRecord, text: str, generator: str, **fields) -> QueryRecord:
        """A negative query on the positive's page, linked to it, with its stable id."""
        return cls(
            query_id=query_id(positive.page_id, "negative", text, positive.query_id),
            page_id=positive.page_id,
            kind="negative",
            text=text,
            parent_id=positive.query_id,
            generator=generator,
            **fields,
        )


class Rejection(BaseModel):
    """A query a stage dropped, and why."""

    model_config = ConfigDict(extra="forbid")

    stage: str
    reason: str
    record: QueryRecord | None = None
    page_id: str | None = None
    raw: str | None = Field(None, description="the model's raw output, when it could not be parsed")
    failed: bool | None = Field(
        None, description="True when no judgement was made: a request got no answer (a rerun asks it again)"
    )
