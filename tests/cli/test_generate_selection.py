"""`generate --sample` / `--max-pages`: an empty choice is a one-line usage error, never a run over the whole
store (days of model time on a CPU). Every case stops before a model is loaded."""

from __future__ import annotations

from pathlib import Path

import pytest

from docrerank.cli.app import EXIT_USAGE
from docrerank.cli.generate import select_pages
from docrerank.pages import IngestSettings, OcrMode, PageStore, ingest
from tests.cli.common import error_line
from tests.helpers import SCAN


@pytest.fixture(scope="module")
def textless_store(tmp_path_factory) -> PageStore:
    """A scanned page ingested without OCR: a store with one page and no text."""
    root = tmp_path_factory.mktemp("textless") / "store"
    report = ingest([SCAN], root, IngestSettings(ocr=OcrMode.NEVER), workers=1)
    assert report.ok and len(PageStore.open(root)) == 1
    return PageStore.open(root)


@pytest.mark.parametrize(
    ("option", "value"), [("--sample", "0"), ("--max-pages", "0"), ("--max-pages", "-3"), ("--sample", "-1")]
)
def test_a_count_below_1_is_a_usage_error(option, value, vignette_store, tmp_path, docrerank):
    run = tmp_path / "run"
    result = docrerank("generate", "--pages", vignette_store.root, "--run-dir", run, option, value, "--no-progress")
    assert result.exit_code == EXIT_USAGE
    assert error_line(result) == (
        f"error: {option} {value}: give a number of pages >= 1 (leave {option} out for every page)"
    )
    assert not run.exists()  # nothing ran


@pytest.mark.parametrize("option", ["--sample", "--max-pages"])
def test_a_choice_that_finds_no_page_is_a_usage_error(option, textless_store, tmp_path, docrerank):
    run = tmp_path / "run"
    result = docrerank("generate", "--pages", textless_store.root, "--run-dir", run, option, "4", "--no-progress")
    assert result.exit_code == EXIT_USAGE
    line = error_line(result)
    assert line.startswith(f"error: {option} 4 found no page with")
    assert f"among the 1 page(s) of {textless_store.root}" in line and "--ocr auto" in line
    assert not run.exists()


def test_both_options_at_once_is_a_usage_error(vignette_store, tmp_path, docrerank):
    run = tmp_path / "run"
    result = docrerank(
        "generate", "--pages", vignette_store.root, "--run-dir", run, "--sample", "2", "--max-pages", "2"
    )
    assert result.exit_code == EXIT_USAGE
    assert error_line(result) == "error: give --sample N or --max-pages N, not both"
    assert not run.exists()


def test_the_pages_chosen(vignette_store):
    store, where = vignette_store, Path(vignette_store.root)
    with_text = [p.page_id for p in store if p.text.strip()]
    assert select_pages(store, where, None, None, seed=0) is None  # neither option: the whole store
    assert select_pages(store, where, 2, None, seed=0) == with_text[:2]
    assert select_pages(store, where, 99, None, seed=0) == with_text  # more than there are: all of them
    sample = select_pages(store, where, None, 2, seed=0)
    assert len(sample) == 2 and set(sample) <= set(with_text)
    assert select_pages(store, where, None, 2, seed=0) == sample  # seeded
