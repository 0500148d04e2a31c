"""Fixtures: real documents built once per session, and a store built from the committed pages."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from docrerank.pages import IngestSettings, PageStore, ingest
from tests.helpers import PDF3, SCAN, make_pdf, text_page


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
    report = ingest([inputs], out, IngestSettings(), workers=2, show_progress=False)
    assert report.ok, report.errors
    return PageStore.open(out)


@pytest.fixture(scope="session")
def vignette_store(tmp_path_factory) -> PageStore:
    """The committed 3-page vignette PDF alone, ingested once: real text pages for the model tests."""
    root = tmp_path_factory.mktemp("vignette-store")
    ingest([PDF3], root, show_progress=False)
    return PageStore.open(root)
