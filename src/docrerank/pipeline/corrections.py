"""A person's corrections of a run: appended to ``RUN/corrections.jsonl``, applied by every export and mixture.

A correction names its item by page and query text (not by shard or position), so it survives a rerun that
rewrites the shards. Kinds:

- ``answerable`` / ``unanswerable``: a person's reading of whether the page answers the query. On a kept
  negative, ``answerable`` drops it (the verifier was wrong); on a rejected negative, ``unanswerable`` keeps
  it, beyond the selection's count, marked ``corrected``. The same reading that agrees with the run changes
  nothing but is kept: every reading is a labeled pair (``labeled_pairs``) that measures the verifier
  (``docrerank evaluate-verifier --pairs``), a review's seeded sample without bias.
- ``edit``: the query's text replaced by the person's (``generator: person``, not verified by a model).
- ``drop``: the item removed (a positive with its rephrasings and negatives).
- ``undo``: an earlier correction no longer in force; the history keeps both.

Later corrections of the same item win over earlier ones of the same family (a reading, or an edit).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from docrerank.errors import DocrerankError
from docrerank.pipeline.records import QueryKind, QueryRecord, query_id

__all__ = [
    "CORRECTIONS",
    "Correction",
    "CorrectionsApplied",
    "append_correction",
    "apply_corrections",
    "in_force",
    "item_key",
    "labeled_pairs",
    "read_corrections",
    "write_labeled_pairs",
]

CORRECTIONS = "corrections.jsonl"
Action = Literal["answerable", "unanswerable", "edit", "drop", "undo"]


class Correction(BaseModel):
    """One line of ``corrections.jsonl``."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(default_factory=lambda: uuid.uuid4().hex[:12])
    at: str = Field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    action: Action
    page_id: str
    query: str = Field(description="the item's query text when it was corrected (its key, with the page)")
    kind: QueryKind | None = None
    text: str | None = Field(None, description="edit: the new text")
    undoes: str | None = Field(None, description="undo: the id of the correction it takes back")
    record: QueryRecord | None = Field(None, description="the item as the run held it (a rejected one is kept from it)")
    status: str | None = Field(None, description="the item's status when it was corrected: kept, rejected, ...")
    by: str = "person"

    @property
    def key(self) -> tuple[str, str]:
        return item_key(self.page_id, self.query)


def item_key(page_id: str, text: str) -> tuple[str, str]:
    return page_id, " ".join(text.split()).casefold()


def read_corrections(run_dir: str | Path) -> list[Correction]:
    """Every correction of the run, in the order made (an empty list when there are none).

    Raises:
        DocrerankError: a line that is not a correction, named with its number.
    """
    path = Path(run_dir) / CORRECTIONS
    if not path.is_file():
        return []
    corrections = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            corrections.append(Correction.model_validate_json(line))
        except ValueError as exc:
            raise DocrerankError(
                f"{path}, line {number}, is not a correction ({str(exc).splitlines()[0]}): remove or mend the line"
            ) from None
    return corrections


def append_correction(run_dir: str | Path, correction: Correction) -> Correction:
    """Append one correction (one short line, flushed and synced: a crash loses at most this one)."""
    path = Path(run_dir) / CORRECTIONS
    with path.open("a") as handle:
        handle.write(correction.model_dump_json(exclude_none=True) + "\n")
        handle.flush()
    return correction


def in_force(corrections: Iterable[Correction]) -> list[Correction]:
    """The corrections not undone, in order (the undos themselves left out)."""
    corrections = list(corrections)
    undone = {c.undoes for c in corrections if c.action == "undo"}
    return [c for c in corrections if c.action != "undo" and c.id not in undone]


def _latest(corrections: list[Correction]) -> dict[tuple[str, str], dict[str, Correction]]:
    """Per item, its latest reading, edit and drop."""
    family = {"answerable": "reading", "unanswerable": "reading", "edit": "edit", "drop": "drop"}
    latest: dict[tuple[str, str], dict[str, Correction]] = {}
    for correction in corrections:
        latest.setdefault(correction.key, {})[family[correction.action]] = correction
    return latest


@dataclass
class CorrectionsApplied:
    """What applying the corrections did, for ``stats`` and the export's summary."""

    in_force: int = 0
    by_action: dict[str, int] = field(default_factory=dict)
    dropped: int = 0  # kept items removed (drop, or a negative read as answerable)
    added: int = 0  # rejected negatives kept (read as unanswerable)
    edited: int = 0
    unmatched: list[Correction] = field(default_factory=list)  # items no longer in the run

    def as_dict(self) -> dict:
        return {
            "in_force": self.in_force,
            "by_action": dict(sorted(self.by_action.items())),
            "dropped": self.dropped,
            "added": self.added,
            "edited": self.edited,
            "unmatched": [
                {"id": c.id, "action": c.action, "page_id": c.page_id, "query": c.query} for c in self.unmatched
            ],
        }


def apply_corrections(
    records: list[QueryRecord], corrections: Iterable[Correction], rejected: Iterable[QueryRecord] = ()
) -> tuple[list[QueryRecord], CorrectionsApplied]:
    """The run's final records with the corrections in force applied; ``rejected``: the run's rejected
    records, which a reading of ``unanswerable`` brings back (also taken from the correction's own copy)."""
    active = in_force(corrections)
    summary = CorrectionsApplied(in_force=len(active))
    for correction in active:
        summary.by_action[correction.action] = summary.by_action.get(correction.action, 0) + 1
    latest = _latest(active)
    out: list[QueryRecord] = []
    removed_ids: set[str] = set()
    renamed: dict[str, str] = {}
    for record in records:
        found = latest.get(item_key(record.page_id, record.text), {})
        drop, reading, edit = found.get("drop"), found.get("reading"), found.get("edit")
        if drop or (reading and record.kind == "negative" and reading.action == "answerable"):
            removed_ids.add(record.query_id)
            summary.dropped += 1
            continue
        if reading and record.kind != "negative" and reading.action == "unanswerable":
            removed_ids.add(record.query_id)  # a positive the page does not answer: no group is left
            summary.dropped += 1
            continue
        if edit and edit.text:
            new_id = query_id(record.page_id, record.kind, edit.text, record.parent_id)
            renamed[record.query_id] = new_id
            record = record.model_copy(
                update={"text": edit.text.strip(), "query_id": new_id, "generator": "person", "verdict": None,
                        "corrected": "edited"}
            )  # fmt: skip
            summary.edited += 1
        out.append(record)
    kept = {item_key(r.page_id, r.text) for r in records}
    known_rejected = {item_key(r.page_id, r.text): r for r in rejected}
    parents = {r.query_id for r in out if r.kind == "positive"} | set(renamed)  # edited: known by their old id
    stranded = set()  # read unanswerable, but its positive is gone: nothing to attach it to
    for correction in active:
        if correction.action != "unanswerable" or correction.key in kept or correction.kind not in (None, "negative"):
            continue
        record = known_rejected.get(correction.key) or correction.record
        if latest[correction.key].get("reading") is not correction:
            continue  # a later reading of the same query decides
        if record is None or record.kind != "negative" or record.parent_id not in parents:
            stranded.add(correction.id)
            continue
        out.append(record.model_copy(update={"corrected": "unanswerable"}))
        summary.added += 1
    out = [
        r.model_copy(update={"parent_id": renamed.get(r.parent_id, r.parent_id)})
        for r in out
        if r.parent_id not in removed_ids
    ]
    present = kept | set(known_rejected)  # a correction of a query no longer in the run, or one left stranded
    summary.unmatched = [c for c in active if c.key not in present or c.id in stranded]
    return out, summary


def labeled_pairs(corrections: Iterable[Correction]) -> list[dict]:
    """A person's readings in force, as the labeled pairs ``evaluate-verifier --pairs`` reads (the latest
    reading of each item)."""
    readings = [c for c in in_force(corrections) if c.action in ("answerable", "unanswerable")]
    latest = {c.key: c for c in readings}
    return [
        {"page_id": c.page_id, "query": c.query, "answerable": c.action == "answerable", "id": c.id,
         "labeled_by": c.by, **({"kind": c.kind} if c.kind else {})}
        for c in latest.values()
    ]  # fmt: skip


def write_labeled_pairs(corrections: Iterable[Correction], path: Path) -> int:
    """Write ``labeled_pairs`` as JSONL; returns how many."""
    pairs = labeled_pairs(corrections)
    path.write_text("".join(json.dumps(p) + "\n" for p in pairs))
    return len(pairs)
