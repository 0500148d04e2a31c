"""A run directory read for people: every page's queries with the stage each reached, its status and why.

Each query the run made is one ``Item``: its record as the last stage that saw it left it, that stage, and
its status (``kept``: it reached the last stage that has run on its shard; ``rejected``: a stage dropped it,
with the reason). Rejections without a record (a generation whose output could not be parsed) stay with
their page. A person's corrections (``pipeline.corrections``) are read beside them.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from filelock import FileLock, Timeout

from docrerank.errors import DocrerankError
from docrerank.pages import PageStore
from docrerank.pipeline.corrections import Correction, in_force, item_key, read_corrections
from docrerank.pipeline.generate import STORE_FILE
from docrerank.pipeline.records import QueryRecord, Rejection
from docrerank.pipeline.rundir import RunDir
from docrerank.pipeline.stages import STAGES
from docrerank.retrieval.mining import MinedExample, read_mined

__all__ = ["Filters", "Item", "RunView", "open_store"]


@dataclass
class Item:
    record: QueryRecord
    stage: str  # the last stage that kept or rejected it
    status: str  # kept | rejected
    reason: str | None = None

    @property
    def score(self) -> float | None:
        """The verifier's highest P(yes) (None: not verified)."""
        return max(self.record.verdict.p_yes) if self.record.verdict and self.record.verdict.p_yes else None

    @property
    def key(self) -> tuple[str, str]:
        return item_key(self.record.page_id, self.record.text)


@dataclass
class Filters:
    """What the item list is narrowed to (each empty: everything)."""

    stage: str = ""
    status: str = ""
    kind: str = ""
    generator: str = ""
    property: str = ""
    min_score: float | None = None
    max_score: float | None = None
    q: str = ""

    def keep(self, item: Item) -> bool:
        record = item.record
        checks = [
            not self.stage or item.stage == self.stage,
            not self.status or item.status == self.status,
            not self.kind or record.kind == self.kind,
            not self.generator or record.generator == self.generator,
            not self.property or record.property == self.property,
            self.q.casefold() in record.text.casefold(),
        ]
        score = item.score
        if self.min_score is not None:
            checks.append(score is not None and score >= self.min_score)
        if self.max_score is not None:
            checks.append(score is not None and score <= self.max_score)
        return all(checks)


@dataclass
class RunView:
    """A run directory, its store and mined pages, read once (``reload`` reads them again)."""

    root: Path
    store: PageStore
    mined_dir: Path | None = None
    page_ids: list[str] = field(default_factory=list)
    items: dict[str, list[Item]] = field(default_factory=dict)  # page id -> items in stage order
    failures: dict[str, list[Rejection]] = field(default_factory=dict)  # page id -> rejections without a record
    mined: dict[str, list[MinedExample]] = field(default_factory=dict)  # page id -> examples of its queries

    @classmethod
    def open(cls, run_dir: str | Path, store: str | Path | None = None, mined: str | Path | None = None) -> RunView:
        root = Path(run_dir)
        if not (root / "shards").is_dir():
            raise DocrerankError(f"{root} is not a run directory (no shards/): give a `docrerank generate --run-dir`")
        view = cls(root, open_store(root, store), Path(mined) if mined else None)
        view.reload()
        return view

    def reload(self) -> None:
        run = RunDir(self.root)
        self.page_ids = [pid for page_ids in run.shard_pages().values() for pid in page_ids]
        items: dict[str, dict[str, Item]] = {pid: {} for pid in self.page_ids}
        self.failures = {pid: [] for pid in self.page_ids}
        for stage in STAGES:
            for shard in run.shards(stage):
                for record in run.read_shard(stage, shard, QueryRecord):
                    items.setdefault(record.page_id, {})[record.query_id] = Item(record, stage, "kept")
                for rejection in run.read_shard(stage, shard, Rejection, rejected=True):
                    if rejection.record is not None:
                        record = rejection.record
                        items.setdefault(record.page_id, {})[record.query_id] = Item(
                            record, stage, "rejected", rejection.reason
                        )
                    elif rejection.page_id:
                        self.failures.setdefault(rejection.page_id, []).append(rejection)
        self.items = {pid: list(found.values()) for pid, found in items.items()}
        self.mined = {}
        if self.mined_dir is not None:
            for example in read_mined(self.mined_dir):
                self.mined.setdefault(example.positive, []).append(example)

    @property
    def in_progress(self) -> bool:
        """A process holds the run's writer lock (a generation is running): the viewer is read-only then."""
        lock = FileLock(self.root / ".lock", timeout=0, is_singleton=False)
        try:
            lock.acquire()
        except Timeout:
            return True
        lock.release()
        return False

    def corrections(self) -> list[Correction]:
        return read_corrections(self.root)

    def all_items(self) -> list[Item]:
        return [item for pid in self.page_ids for item in self.items.get(pid, [])]

    def choices(self) -> dict[str, list[str]]:
        """The values each filter can take in this run."""
        items = self.all_items()
        return {
            "stage": [s for s in STAGES if any(i.stage == s for i in items)],
            "status": ["kept", "rejected"],
            "kind": sorted({i.record.kind for i in items}),
            "generator": sorted({i.record.generator for i in items}),
            "property": sorted({i.record.property for i in items if i.record.property}),
        }

    def review_sample(self, seed: int, size: int) -> list[Item]:
        """A seeded random sample of the negatives the verifier judged (kept and rejected alike; every negative
        of a run without verification), so a person's readings measure the verifier without bias: the same
        seed gives the same sample."""
        negatives = [item for item in self.all_items() if item.record.kind == "negative"]
        judged = [item for item in negatives if item.record.verdict] or negatives
        return random.Random(seed).sample(judged, min(size, len(judged)))

    def readings(self) -> dict[tuple[str, str], Correction]:
        """Each item's latest reading in force (answerable / unanswerable)."""
        return {c.key: c for c in in_force(self.corrections()) if c.action in ("answerable", "unanswerable")}

    def counts(self) -> Counter:
        return Counter((item.stage, item.status) for item in self.all_items())


def open_store(run_dir: Path, store: str | Path | None) -> PageStore:
    """The store named, else the one the run recorded (``RUN/store.json``)."""
    if store is not None:
        return PageStore.open(store)
    recorded = run_dir / STORE_FILE
    if not recorded.is_file():
        raise DocrerankError(f"{run_dir} does not record its page store (made by an older docrerank): give --pages")
    root = Path(json.loads(recorded.read_text())["root"])
    if not root.is_dir():
        raise DocrerankError(f"the run's page store {root} is not there (moved?): give --pages with where it is now")
    return PageStore.open(root)
