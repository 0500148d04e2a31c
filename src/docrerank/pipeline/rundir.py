"""The run directory: the pipeline's output and its cache at once.

Layout::

    RUN/config.yaml                    the resolved config of the run
    RUN/fingerprints.json              stage -> fingerprint (config, prompts, model, upstream)
    RUN/cache.sqlite                   the backends' response cache
    RUN/stages/<stage>/<shard>.jsonl           kept records of one shard of pages
    RUN/stages/<stage>/<shard>.rejected.jsonl  rejected records with the reason
    RUN/stages/<stage>/<shard>.done            completion marker, written last
    RUN/stats.json                     counts, pass rates, rejection reasons, tokens, time

A shard is done when its marker exists; its files were written atomically before the marker, so a run
killed at any moment resumes by redoing only unmarked shards. A stage whose fingerprint changed since the
run directory was written stops the run (its outputs would mix two configurations) unless forced, which
clears that stage and every stage after it.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from docrerank.errors import SettingsMismatchError
from docrerank.pages.store import atomic_write_bytes

__all__ = ["RunDir", "fingerprint"]


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

    def is_done(self, stage: str, shard: str) -> bool:
        return (self.stage_dir(stage) / f"{shard}.done").exists()

    def write_shard(self, stage: str, shard: str, kept: Iterable[BaseModel], rejected: Iterable[BaseModel]) -> None:
        """Write a shard's kept and rejected records atomically, then its completion marker."""
        folder = self.stage_dir(stage)
        for name, records in ((f"{shard}.jsonl", kept), (f"{shard}.rejected.jsonl", rejected)):
            lines = "".join(record.model_dump_json(exclude_none=True) + "\n" for record in records)
            atomic_write_bytes(folder / name, lines.encode())
        atomic_write_bytes(folder / f"{shard}.done", b"")

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
