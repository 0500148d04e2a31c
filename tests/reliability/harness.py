"""What the reliability tests share: the pipeline config for the FAKE loopback server, the ``generate``
command, a run directory's records as sets, and the counts the suite reports (``COUNTS``, printed at the end
of the session for the README).

The FAKE server (``docrerank.testing.fake_server``) is used here only to inject faults and to time the
orchestration (kill the client at its Nth request); everything else is the real command on real pages.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from docrerank.pipeline.stages import STAGES
from docrerank.testing.fake_server import FakeOpenAIServer

HERE = Path(__file__).resolve().parent
CONCURRENCY = 4  # the fake backend's max_concurrency: at most this many requests are in flight at a kill

# What the suite did, for the README's "Reliability" counts (printed by conftest.py at the end).
COUNTS: Counter[str] = Counter()


def fake_backend(server: FakeOpenAIServer, **settings) -> dict:
    return {
        "type": "openai",
        "base_url": server.url,
        "model": "fake",
        "max_concurrency": CONCURRENCY,
        "max_retries": 0,
        "timeout_s": 30,
        **settings,
    }


def fake_pipeline_config(backend: dict, **overrides) -> dict:
    """Every stage on, sized so that a 3-page run sends ~100 requests over 3 one-page shards.

    The fake verifier answers P(yes) ~0.84 for everything, so positives pass (threshold 0.5) and negatives
    pass below 0.9; the filters and the controlled-edit checks still reject some candidates, so both kept
    and rejected records exist in the stages.
    """
    config = {
        "pages_per_shard": 1,
        "max_page_chars": 1200,
        "backends": {"generator": backend, "verifier": backend},
        "positives": {"n": 3},
        "positives_verified": {"keep": 2},
        "rephrased": {"fraction": 1.0},
        "negative_candidates": {
            "freeform": {"m": 3},
            "controlled": {"properties": ["number", "date"], "per_property": 1},
            "rulebased": {"m": 3},
        },
        "negatives_verified": {"threshold": 0.9},
        "selected": {"k": 2},
    }
    config.update(overrides)
    return config


def write_config(path: Path, config: dict) -> Path:
    path.write_text(yaml.safe_dump(config))
    return path


def generate_args(store: Path, config: Path, run: Path, *extra: str) -> list[str]:
    return ["generate", "--pages", str(store), "--config", str(config), "--run-dir", str(run), "--no-progress", *extra]


class Child:
    """A command the ``Launcher`` forked: the parts of ``subprocess.Popen`` the tests use."""

    def __init__(self, pid: int, status: Path, stdout: Path, stderr: Path):
        self.pid, self._status, self._stdout, self._stderr = pid, status, stdout, stderr
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None and self._status.exists():
            self.returncode = int(self._status.read_text())
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = time.monotonic() + (timeout if timeout is not None else 1e9)
        while self.poll() is None:
            if time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(f"docrerank (pid {self.pid})", timeout)
            time.sleep(0.01)
        return self.returncode

    def communicate(self) -> tuple[bytes, bytes]:
        self.wait(60)
        return self._stdout.read_bytes(), self._stderr.read_bytes()


class Launcher:
    """``launcher.py`` running: ``start(args)`` forks ``docrerank ARGS`` from an interpreter that imported
    the CLI once (seconds saved per trial), optionally frozen at a crash point."""

    def __init__(self, folder: Path):
        self.folder = folder
        (folder / "status").mkdir(parents=True, exist_ok=True)
        self._count = 0
        self._process = subprocess.Popen(
            [sys.executable, str(HERE / "launcher.py"), str(folder / "status")],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "COLUMNS": "400"},
        )
        assert self._process.stdout.readline().strip() == "ready"

    def start(self, args: list[str], env: dict | None = None, crashpoint: list | None = None) -> Child:
        self._count += 1
        stdout, stderr = self.folder / f"{self._count}.out", self.folder / f"{self._count}.err"
        job = {"args": [str(a) for a in args], "env": env or {}, "stdout": str(stdout), "stderr": str(stderr)}
        if crashpoint:
            job["crashpoint"] = [str(part) for part in crashpoint]
        self._process.stdin.write(json.dumps(job) + "\n")
        self._process.stdin.flush()
        pid = int(self._process.stdout.readline())
        return Child(pid, self.folder / "status" / str(pid), stdout, stderr)

    def run(self, args: list[str], env: dict | None = None, timeout: float = 300) -> tuple[int, str, str]:
        """Run a command to its end: (exit code, stdout, stderr)."""
        child = self.start(args, env)
        try:
            child.wait(timeout)
        finally:
            kill9(child)
        out, err = child.communicate()
        return child.returncode, out.decode("utf-8", "replace"), err.decode("utf-8", "replace")

    def close(self) -> None:
        self._process.stdin.close()
        self._process.wait(30)


def kill9(process) -> None:
    try:
        os.kill(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def wait_for(condition: Callable[[], bool], process, timeout: float = 120, step=0.01) -> bool:
    """Poll ``condition`` until it holds (True), the process ends or the time is up (False)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        if process.poll() is not None:
            return condition()
        time.sleep(step)
    return False


@dataclass
class RunRecords:
    """A run directory's records per stage, kept and rejected, as multisets of their JSON lines."""

    kept: dict[str, Counter[str]] = field(default_factory=dict)
    rejected: dict[str, Counter[str]] = field(default_factory=dict)

    def total(self) -> int:
        return sum(sum(c.values()) for c in (*self.kept.values(), *self.rejected.values()))


def run_records(run: Path) -> RunRecords:
    records = RunRecords()
    for stage in STAGES:
        folder = run / "stages" / stage
        kept: Counter[str] = Counter()
        rejected: Counter[str] = Counter()
        for path in sorted(folder.glob("shard-*.jsonl")):
            target = rejected if path.name.endswith(".rejected.jsonl") else kept
            target.update(line for line in path.read_text().splitlines() if line.strip())
        records.kept[stage], records.rejected[stage] = kept, rejected
    return records


def records_lost(reference: RunRecords, other: RunRecords) -> int:
    """Records of the reference missing from the other run (counted with multiplicity)."""
    return sum(
        sum((ref - got).values())
        for part in ("kept", "rejected")
        for ref, got in ((getattr(reference, part)[s], getattr(other, part)[s]) for s in STAGES)
    )


def records_extra(reference: RunRecords, other: RunRecords) -> int:
    """Records in the other run beyond the reference's: duplicates or records the reference does not have."""
    return records_lost(other, reference)


def unfinished_shard_files(run: Path) -> list[str]:
    """Stage files of a shard without its completion marker (what a kill can leave; a resume must finish)."""
    found = []
    for stage in STAGES:
        folder = run / "stages" / stage
        for path in folder.glob("shard-*.jsonl"):
            shard = path.name.split(".")[0]
            if not (folder / f"{shard}.done").exists():
                found.append(f"{stage}/{path.name}")
    return found


def cached_keys(run: Path) -> set[str]:
    """The response cache's keys: every answer the run kept (read after a kill: SQLite recovers the WAL)."""
    path = run / "cache.sqlite"
    if not path.exists():
        return set()
    with sqlite3.connect(path) as db:
        try:
            return {row[0] for row in db.execute("SELECT key FROM responses")}
        except sqlite3.OperationalError:  # killed before the table existed
            return set()


def logged_keys(log: Path) -> list[str]:
    """The cache keys a run got fresh answers for (``$DOCRERANK_REQUEST_LOG``)."""
    return [line.split(" ", 1)[1] for line in log.read_text().splitlines()] if log.exists() else []


def stage_counts(run: Path) -> dict:
    """stats.json's per-stage counts (not the backends' numbers, which differ between runs)."""
    stats = json.loads((run / "stats.json").read_text())
    return {
        stage: {k: v for k, v in row.items() if k in ("kept", "kept_by_kind", "rejected", "failed")}
        for stage, row in stats["stages"].items()
    }


def files_under(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file())
