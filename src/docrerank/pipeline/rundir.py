"""The run directory: the pipeline's output and its cache at once.

Layout::

    RUN/config.yaml                    the resolved config of the run
    RUN/fingerprints.json              stage -> fingerprint (config, prompts, model, upstream)
    RUN/cache.sqlite                   the backends' response cache
    RUN/.lock                          held by the process that drives the run (one writer)
    RUN/shards/<shard>.json            the page ids of a shard; the shard's name is a hash of them
    RUN/stages/<stage>/<shard>.jsonl           kept records of one shard of pages
    RUN/stages/<stage>/<shard>.rejected.jsonl  rejected records with the reason (failures marked ``failed``)
    RUN/stages/<stage>/<shard>.done            completion marker, written last: {"failed": N, "cost": {...}}
    RUN/stats.json                     counts, pass rates, rejection reasons, tokens, time
    RUN/store.json                     the page store the run was made from (``docrerank view`` opens it)
    RUN/corrections.jsonl              a person's corrections (``docrerank view``), applied by export and mix

A shard is bound to its pages: its name is a hash of its page ids, so a rerun over other or more pages
reuses the shards that hold pages already done and cuts only the new pages into new shards. A shard is
done when its marker exists; its files were written atomically before the marker, so a run killed at any
moment resumes by redoing only unmarked shards. A marker that counts failed requests (a server down, a
timeout after retries) makes a rerun redo that shard's stage (answered requests come from the cache). A
stage whose fingerprint changed since the run directory was written stops the run (its outputs would mix
two configurations) unless forced, which clears that stage and every stage after it.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout
from pydantic import BaseModel

from docrerank.errors import DocrerankError, SettingsMismatchError
from docrerank.pages.store import atomic_write_bytes

__all__ = ["RunDir", "RunLockedError", "fingerprint", "shard_name"]

# shards of the first layout were named by position (shard-00000), bound to no page
_POSITIONAL_SHARD = re.compile(r"shard-\d{5}\.done$")


class RunLockedError(DocrerankError):
    """Another process is writing the run directory."""


def shard_name(page_ids: Iterable[str]) -> str:
    """A shard's name: a hash of its page ids, so the same pages make the same shard in every run."""
    return "shard-" + hashlib.sha256("\n".join(page_ids).encode()).hexdigest()[:12]


def fingerprint(*parts: Any) -> str:
    """A short hash of JSON-able parts (configs, prompt fingerprints, backend identities, upstream)."""
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


class RunDir:
    """A run directory on disk."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    @property
    def cache_path(self) -> Path:
        return self.root / "cache.sqlite"

    @contextmanager
    def writing(self) -> Iterator[None]:
        """Hold the run's writer lock, taken at once or refused (``RunLockedError``). It is an OS file lock,
        so it is released when its process ends, however it ends."""
        lock = FileLock(self.root / ".lock", timeout=0, is_singleton=False)
        try:
            lock.acquire()
        except Timeout:
            raise RunLockedError(
                f"the run directory {self.root} is being written by another process (it holds {self.root / '.lock'}): "
                "wait for it to finish, or use another --run-dir"
            ) from None
        try:
            for leftover in self.root.glob("**/.*.tmp"):  # half-written files of a killed writer: never read
                leftover.unlink(missing_ok=True)
            yield
        finally:
            lock.release()

    def stage_dir(self, stage: str) -> Path:
        return self.root / "stages" / stage

    # -- fingerprints --------------------------------------------------------------------------------

    def _fingerprints(self) -> dict[str, str]:
        path = self.root / "fingerprints.json"
        return json.loads(path.read_text()) if path.is_file() else {}

    def check_fingerprints(self, current: dict[str, str], order: list[str], force: bool) -> list[str]:
        """Compare with the fingerprints on disk; returns the stages cleared (when ``force``).

        Raises:
            SettingsMismatchError: a stage changed and ``force`` is off.
        """
        stored = self._fingerprints()
        changed = [s for s in order if s in stored and s in current and stored[s] != current[s]]
        cleared: list[str] = []
        if changed and not force:
            raise SettingsMismatchError(
                f"the run directory {self.root} holds stage(s) {', '.join(changed)} made with other settings "
                "(config, prompt, model or upstream changed). Use a new --run-dir, or --force to redo "
                "those stages and the ones after them"
            )
        if changed:
            first = min(order.index(s) for s in changed)
            for stage in order[first:]:
                if self.stage_dir(stage).exists():
                    shutil.rmtree(self.stage_dir(stage))
                    cleared.append(stage)
        merged = {**stored, **current}
        atomic_write_bytes(self.root / "fingerprints.json", (json.dumps(merged, indent=2) + "\n").encode())
        return cleared

    # -- shards --------------------------------------------------------------------------------------

    def check_layout(self, force: bool) -> None:
        """Refuse a run directory of the first layout (positional shards, bound to no page), or clear its
        stages when ``force`` (the response cache is kept, so nothing answered is asked again)."""
        stages = self.root / "stages"
        old = stages.is_dir() and any(_POSITIONAL_SHARD.search(p.name) for p in stages.glob("*/*.done"))
        if not old:
            return
        if not force:
            raise SettingsMismatchError(
                f"the run directory {self.root} was made by an older docrerank whose shards are not bound to "
                "their pages, so resuming it could reuse shards for other pages. Use a new --run-dir, or "
                "--force to redo its stages (answered requests still come from its cache)"
            )
        shutil.rmtree(stages)

    def shard_pages(self) -> dict[str, list[str]]:
        """Every shard this run directory has planned, with its page ids."""
        folder = self.root / "shards"
        if not folder.is_dir():
            return {}
        return {p.stem: json.loads(p.read_text()) for p in sorted(folder.glob("shard-*.json"))}

    def add_shard(self, page_ids: list[str]) -> str:
        """Record a new shard of pages; returns its name."""
        name = shard_name(page_ids)
        atomic_write_bytes(self.root / "shards" / f"{name}.json", json.dumps(page_ids).encode())
        return name

    def is_done(self, stage: str, shard: str) -> bool:
        return (self.stage_dir(stage) / f"{shard}.done").exists()

    def _marker(self, stage: str, shard: str) -> dict[str, Any]:
        marker = self.stage_dir(stage) / f"{shard}.done"
        text = marker.read_text() if marker.is_file() else ""
        return json.loads(text) if text.strip() else {}

    def failed(self, stage: str, shard: str) -> int:
        """How many of a finished shard's items failed (requests that got no answer), per its marker."""
        return int(self._marker(stage, shard).get("failed", 0))

    def cost(self, stage: str, shard: str) -> dict[str, float]:
        """What the stage cost on the shard (seconds, requests, tokens...), every attempt summed; {} when its
        marker does not say (not run yet, or written by a docrerank before 0.x that did not count)."""
        return dict(self._marker(stage, shard).get("cost", {}))

    def write_shard(
        self,
        stage: str,
        shard: str,
        kept: Iterable[BaseModel],
        rejected: Iterable[BaseModel],
        failed: int = 0,
        cost: dict[str, float] | None = None,
    ) -> None:
        """Write a shard's kept and rejected records atomically, then its completion marker (with the count
        of failed items, which a rerun retries, and what the stage cost on this shard, every attempt summed)."""
        folder = self.stage_dir(stage)
        for name, records in ((f"{shard}.jsonl", kept), (f"{shard}.rejected.jsonl", rejected)):
            lines = "".join(record.model_dump_json(exclude_none=True) + "\n" for record in records)
            atomic_write_bytes(folder / name, lines.encode())
        marker = {"failed": failed} | ({"cost": cost} if cost else {})
        atomic_write_bytes(folder / f"{shard}.done", json.dumps(marker).encode())

    def read_shard(self, stage: str, shard: str, model: type[BaseModel], rejected: bool = False) -> list:
        path = self.stage_dir(stage) / (f"{shard}.rejected.jsonl" if rejected else f"{shard}.jsonl")
        if not path.is_file():
            return []
        return [model.model_validate_json(line) for line in path.read_text().splitlines() if line.strip()]

    def shards(self, stage: str) -> list[str]:
        """The finished shards of a stage, in order."""
        folder = self.stage_dir(stage)
        return sorted(p.name[: -len(".done")] for p in folder.glob("*.done")) if folder.is_dir() else []

    def write_json(self, name: str, data: Any) -> None:
        atomic_write_bytes(self.root / name, (json.dumps(data, indent=2, default=str) + "\n").encode())
