"""Ingest end to end: identical pages stored once, reruns skip done work, new documents are added,
settings are enforced, and a run killed with SIGKILL resumes to the same store as an uninterrupted one."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time

import pyarrow.parquet as pq
import pytest
from filelock import FileLock

from docrerank.errors import DocrerankError, SettingsMismatchError
from docrerank.pages import IngestSettings, OcrMode, PageStore, ingest
from tests.helpers import PDF3, SCAN, docrerank_command, make_pdf, report_number, run_cli, text_page

NEVER = IngestSettings(ocr=OcrMode.NEVER)


def _ingest(inputs, out, settings=NEVER, workers=1):
    return ingest(inputs, out, settings, workers=workers)


def _doc_of(store, name):
    [doc] = {p.doc_id for p in store if p.source_path.endswith(name)}
    return doc


def test_folders_are_walked_recursively(tmp_path):
    deep = tmp_path / "in" / "a" / "b"
    deep.mkdir(parents=True)
    make_pdf(deep / "deep.pdf", [text_page("Deep one"), text_page("Deep two")])
    shutil.copy2(SCAN, tmp_path / "in" / "scan.png")
    (tmp_path / "in" / "a" / "README.txt").write_text("not an input")
    report = _ingest([tmp_path / "in"], tmp_path / "store", workers=2)
    assert report.ok, report.errors
    assert (report.documents, report.pages_new, report.pages_in_store) == (2, 3, 3)
    store = PageStore.open(tmp_path / "store")
    assert sorted((p.source_path, p.page_index) for p in store) == [
        (str(deep / "deep.pdf"), 0),
        (str(deep / "deep.pdf"), 1),
        (str(tmp_path / "in" / "scan.png"), 0),
    ]
    assert "Deep two" in store.pages_of(_doc_of(store, "deep.pdf"))[1].text


def test_the_same_file_under_two_names_is_one_document(tmp_path):
    shutil.copy2(PDF3, tmp_path / "in-a.pdf")
    shutil.copy2(PDF3, tmp_path / "in-b.pdf")
    report = _ingest([tmp_path / "in-a.pdf", tmp_path / "in-b.pdf"], tmp_path / "store")
    assert report.ok
    assert (report.documents, report.pages_new, report.pages_in_store, report.duplicates) == (1, 3, 3, 0)
    store = PageStore.open(tmp_path / "store")
    assert {p.source_path for p in store} == {str(tmp_path / "in-a.pdf")}
    assert store.manifest.documents == 1


def test_identical_pages_of_different_documents_are_stored_once(tmp_path):
    shared = text_page("A cover page that both reports share")
    a = make_pdf(tmp_path / "a.pdf", [shared, text_page("Report A, page two")])
    b = make_pdf(tmp_path / "b.pdf", [shared, text_page("Report B, page two"), shared])
    report = _ingest([a, b], tmp_path / "store", workers=2)
    assert report.ok
    assert report.documents == 2
    assert report.pages_new == 5  # rendered: 2 + 3
    assert report.pages_in_store == 3  # cover, A2, B2
    assert report.duplicates == 2  # the cover in b.pdf, twice
    store = PageStore.open(tmp_path / "store")
    assert len(store) == 3
    cover = [p for p in store if p.text.startswith("A cover page")]
    assert len(cover) == 1
    assert (cover[0].source_path, cover[0].page_index) == (str(a), 0)  # the first occurrence is kept
    assert len(list((tmp_path / "store" / "images").rglob("*.png"))) == 3
    assert [p.page_index for p in store.pages_of(_doc_of(store, "b.pdf"))] == [1]


def test_a_rerun_skips_everything(tmp_path, good_pdf):
    inputs = [PDF3, good_pdf, SCAN]
    first = _ingest(inputs, tmp_path / "store", workers=2)
    assert first.ok and first.pages_new == 6
    pages_before = pq.read_table(tmp_path / "store" / "pages.parquet")
    units_before = sorted(p.name for p in (tmp_path / "store" / "units").iterdir())
    images_before = {p: p.stat().st_mtime_ns for p in (tmp_path / "store" / "images").rglob("*.png")}

    again = _ingest(inputs, tmp_path / "store", workers=2)
    assert again.ok
    assert (again.pages_new, again.pages_skipped, again.pages_in_store) == (0, 6, 6)
    assert pq.read_table(tmp_path / "store" / "pages.parquet").equals(pages_before)
    assert sorted(p.name for p in (tmp_path / "store" / "units").iterdir()) == units_before
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "store" / "images").rglob("*.png")} == images_before


@pytest.mark.slow
def test_adding_a_document_to_a_store(tmp_path, good_pdf):
    store_dir = tmp_path / "store"
    assert _ingest([PDF3], store_dir).pages_new == 3
    before = {p.page_id: p for p in PageStore.open(store_dir)}
    report = _ingest([good_pdf], store_dir)
    assert (report.pages_new, report.pages_skipped, report.pages_in_store) == (2, 0, 5)
    store = PageStore.open(store_dir)
    assert len(store) == 5 and store.manifest.documents == 2
    assert all(store[page_id] == page for page_id, page in before.items())
    assert sorted(p.text.splitlines()[0] for p in store if p.source_path == str(good_pdf)) == [
        "Good page one",
        "Good page two",
    ]


def test_a_store_refuses_other_settings(tmp_path):
    store_dir = tmp_path / "store"
    _ingest([PDF3], store_dir, IngestSettings(dpi=150, ocr=OcrMode.NEVER))
    before = (store_dir / "pages.parquet").read_bytes()
    with pytest.raises(SettingsMismatchError) as info:
        _ingest([SCAN], store_dir, IngestSettings(dpi=100, ocr=OcrMode.NEVER))
    message = str(info.value)
    assert "dpi: store has 150, now 100" in message
    assert "max_side" not in message  # only what differs is named
    assert (store_dir / "pages.parquet").read_bytes() == before
    assert len(PageStore.open(store_dir)) == 3


@pytest.mark.slow
def test_settings_that_do_not_change_the_output_may_differ(tmp_path, good_pdf):
    store_dir = tmp_path / "store"
    _ingest([PDF3], store_dir, IngestSettings(ocr=OcrMode.NEVER, pages_per_unit=2))
    report = _ingest([PDF3, good_pdf], store_dir, IngestSettings(ocr=OcrMode.NEVER, max_image_pixels=10**6))
    assert report.ok and (report.pages_skipped, report.pages_new) == (3, 2)


def test_a_second_ingest_into_a_busy_store_is_refused(tmp_path):
    store_dir = tmp_path / "store"
    store_dir.mkdir()
    with FileLock(str(store_dir / ".lock")):
        with pytest.raises(DocrerankError, match="another ingest is writing"):
            _ingest([PDF3], store_dir)
    assert _ingest([PDF3], store_dir).pages_new == 3  # free again


def test_report_counts_text_sources(tmp_path):
    report = _ingest([PDF3, SCAN], tmp_path / "store")
    assert report.by_text_source == {"text_layer": 3, "none": 1}


@pytest.mark.slow
def test_a_rerun_retries_failed_pages_and_keeps_the_others(tmp_path):
    # Pages 1 and 3 are scans (OCR in auto mode), page 2 has a text layer; all three are one unit.
    pdf = make_pdf(tmp_path / "mixed.pdf", ["p. 1", text_page("Typed page"), "p. 3"], scan_pages=(0, 2))
    store_dir = tmp_path / "store"
    # OCR at 150 DPI (the scan's own resolution) keeps the test quick; the timeout is too short for
    # Tesseract, so the scans fail the first time
    hurried = IngestSettings(ocr_dpi=150, ocr_timeout_s=0.01)
    first = _ingest([pdf], store_dir, hurried)
    assert sorted(e.item for e in first.errors) == [f"{pdf}#page1", f"{pdf}#page3"]
    assert all("timed out" in e.reason for e in first.errors)
    assert [p.page_index for p in PageStore.open(store_dir)] == [1]

    second = _ingest([pdf], store_dir, IngestSettings(ocr_dpi=150))  # the timeout is no output setting
    assert second.ok, second.errors
    assert (second.pages_skipped, second.pages_new, second.pages_in_store) == (1, 2, 3)
    store = PageStore.open(store_dir)
    assert [(p.page_index, p.text_source.value) for p in store] == [(0, "ocr"), (1, "text_layer"), (2, "ocr")]
    assert "Fstats" in store.pages_of(_doc_of(store, "mixed.pdf"))[2].text


@pytest.mark.slow
def test_resume_after_kill_gives_the_same_store(tmp_path):
    pages = [text_page(f"Page {n} of the long report", lines=40) for n in range(1, 61)]
    pdf = make_pdf(tmp_path / "long.pdf", pages)
    args = ["ingest", str(pdf), "--ocr", "never", "--workers", "1", "--dpi", "100", "--no-progress"]

    reference = run_cli(*args, "--out", tmp_path / "reference")
    assert reference.exit_code == 0, reference.stderr
    assert report_number(reference.stdout, "pages ingested now") == 60

    store = tmp_path / "store"
    units = store / "units"
    process = subprocess.Popen(
        [*docrerank_command(), *args, "--out", str(store)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its own process group: the orphaned worker is cleaned up below
    )
    try:
        deadline = time.monotonic() + 120
        while not (units.is_dir() and any(units.glob("*.parquet"))):
            assert process.poll() is None, "the run ended before any unit was written"
            assert time.monotonic() < deadline, "no unit written in 120 s"
            time.sleep(0.01)
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
    finally:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.wait()
    assert process.returncode == -signal.SIGKILL
    done_units = len(list(units.glob("*.parquet")))
    assert 1 <= done_units < 8  # 60 pages in units of 8: killed part way
    assert not (store / "pages.parquet").exists()  # it never got to the end

    rerun = run_cli(*args, "--out", store)
    assert rerun.exit_code == 0, rerun.stderr
    skipped = report_number(rerun.stdout, "pages already done (skipped)")
    assert skipped == 8 * done_units  # exactly the pages of the finished units
    assert skipped + report_number(rerun.stdout, "pages ingested now") == 60

    resumed = pq.read_table(store / "pages.parquet")
    assert resumed.num_rows == 60
    assert resumed.equals(pq.read_table(tmp_path / "reference" / "pages.parquet"))
    assert resumed.column("page_index").to_pylist() == list(range(60))
    assert PageStore.open(store).manifest.pages == 60
