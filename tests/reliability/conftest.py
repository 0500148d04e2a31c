"""The reliability suite: crash and resume, one writer per run directory, faults, bad input, secrets.

Every test here carries the ``reliability`` marker (``pytest -m reliability``); CI runs it with the rest of
``tests/``. At the end of a session the suite prints what it did (trials, faults injected, bad inputs tried,
records lost), the counts the README reports.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from docrerank.testing.fake_server import FakeOpenAIServer
from tests.helpers import invoke_cli
from tests.reliability.harness import (
    COUNTS,
    Launcher,
    RunRecords,
    fake_backend,
    fake_pipeline_config,
    generate_args,
    run_records,
    stage_counts,
    write_config,
)


def pytest_configure(config) -> None:
    config.addinivalue_line("markers", "reliability: the reliability suite (tests/reliability)")


def pytest_collection_modifyitems(config, items) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(item.fspath).parents:
            item.add_marker(pytest.mark.reliability)


def pytest_terminal_summary(terminalreporter) -> None:
    if COUNTS:
        terminalreporter.write_sep("-", "reliability counts")
        for name, value in sorted(COUNTS.items()):
            terminalreporter.write_line(f"{name}: {value}")


@pytest.fixture(scope="session")
def launcher(tmp_path_factory) -> Iterator[Launcher]:
    """Forks ``docrerank`` commands from an interpreter that imported the CLI once (see launcher.py)."""
    started = Launcher(tmp_path_factory.mktemp("launcher"))
    yield started
    started.close()


@pytest.fixture(scope="session")
def fake_server() -> Iterator[FakeOpenAIServer]:
    """The deterministic FAKE loopback server (schema answers differ per request; fixed choice scores)."""
    with FakeOpenAIServer(answer_schemas=True, latency_s=0.01) as server:
        yield server


@dataclass(frozen=True)
class Reference:
    """An uninterrupted run on the FAKE server: what every interrupted or faulted run must end equal to."""

    store: Path
    config: Path
    run: Path
    records: RunRecords
    stages: dict
    request_keys: list[str]  # the bodies it sent, in order (fake server body keys)


@pytest.fixture(scope="session")
def reference(vignette_store, fake_server, tmp_path_factory) -> Reference:
    root = tmp_path_factory.mktemp("reference")
    config = write_config(root / "config.yaml", fake_pipeline_config(fake_backend(fake_server)))
    start = fake_server.log.requests
    result = invoke_cli(*generate_args(vignette_store.root, config, root / "run"))
    assert result.exit_code == 0, (result.stdout, result.exception)
    keys = fake_server.log.keys[start:]
    assert len(keys) == len(set(keys)), "the uninterrupted run sent a request twice"
    records = run_records(root / "run")
    assert records.kept["selected"] and sum(records.rejected["negative_candidates"].values())
    return Reference(vignette_store.root, config, root / "run", records, stage_counts(root / "run"), keys)
