"""Fixtures: real documents built once per session, and a store built from the committed pages."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from docrerank.pages import IngestSettings, PageStore, ingest
from tests.helpers import DATA, PDF3, ROOT, SCAN, THREADS, WORKERS, make_pdf, text_page

MINING_QUERIES = DATA.parent / "mining-queries.jsonl"  # queries on sample pages, named by file and page index


def pytest_configure(config):
    """Wide consoles (the CLI's lines are asserted whole), in every process however pytest runs; a pytest-xdist
    worker uses its share of the cores, in process and in the commands its tests start."""
    os.environ["COLUMNS"] = "400"
    if WORKERS > 1 and os.environ.get("PYTEST_XDIST_WORKER"):
        os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = str(THREADS)
        import torch

        torch.set_num_threads(THREADS)


def pytest_collection_modifyitems(config, items):
    """Files with slow tests first: pytest-xdist deals whole files to its workers in this order, so the long ones
    start at once and short ones fill in at the end, rather than one worker left alone with a long file."""
    slow = {item.path for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.path not in slow)


@pytest.fixture(scope="session")
def good_pdf(tmp_path_factory) -> Path:
    """A real 2-page PDF with a text layer: the good input given alongside bad ones."""
    folder = tmp_path_factory.mktemp("good")
    return make_pdf(folder / "good.pdf", [text_page("Good page one"), text_page("Good page two")])


@pytest.fixture(scope="session")
def committed_store(tmp_path_factory) -> PageStore:
    """The committed pages (3-page PDF, scanned PNG) ingested with the default settings (OCR auto)."""
    inputs = tmp_path_factory.mktemp("committed")
    shutil.copy2(PDF3, inputs / PDF3.name)
    shutil.copy2(SCAN, inputs / SCAN.name)
    out = tmp_path_factory.mktemp("committed-store") / "store"
    report = ingest([inputs], out, IngestSettings(), workers=2)
    assert report.ok, report.errors
    return PageStore.open(out)


@pytest.fixture(scope="session")
def vignette_store(tmp_path_factory) -> PageStore:
    """The committed 3-page vignette PDF alone, ingested once: real text pages for the model tests."""
    root = tmp_path_factory.mktemp("vignette-store")
    ingest([PDF3], root)
    return PageStore.open(root)


@pytest.fixture(scope="session")
def sample_pages(tmp_path_factory) -> PageStore:
    """Two of the pinned sample packages (strucchange, xts: 3 PDFs, 46 pages), fetched and ingested once."""
    from docrerank.samples import fetch_samples

    root = tmp_path_factory.mktemp("sample-pages")
    ingest(fetch_samples(names=["r-cran-strucchange", "r-cran-xts"]), root)
    return PageStore.open(root)


@pytest.fixture(scope="session")
def all_sample_pages(tmp_path_factory) -> PageStore:
    """Every pinned sample package (839 pages), fetched and ingested once for the session (~1-2 min): the
    training sets and the quality benchmark's test set read it (page ids are content hashes, so any store of
    these documents names the same pages)."""
    from docrerank.samples import fetch_samples

    root = tmp_path_factory.mktemp("all-sample-pages")
    ingest(fetch_samples(), root)
    return PageStore.open(root)


@pytest.fixture(scope="session")
def mining_queries(sample_pages, tmp_path_factory) -> Path:
    """tests/data/mining-queries.jsonl with each query's page (file, page index) as the store's page id."""
    pages = {(Path(p.source_path).name, p.page_index): p.page_id for p in sample_pages}
    lines = []
    for line in MINING_QUERIES.read_text().splitlines():
        row = json.loads(line)
        page_id = pages[(row.pop("file"), row.pop("page_index"))]
        lines.append(json.dumps({**row, "page_id": page_id}))
    path = tmp_path_factory.mktemp("mining-queries") / "queries.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def _browser() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="session")
def chromium() -> str:
    """Debian's chromium (the report's and the viewer's browser tests); installed here (scripts/system-deps.sh,
    as `make test` does) when it can be."""
    if _browser() is None:
        done = subprocess.run([ROOT / "scripts" / "system-deps.sh", "chromium"], capture_output=True, text=True)
        assert done.returncode == 0, f"installing chromium failed: {done.stderr[-2000:]}"
        if _browser() is None:
            pytest.skip(f"chromium is not installed and cannot be installed here: {done.stderr.strip()}")
    return _browser()
