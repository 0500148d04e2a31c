"""OCR with the real Tesseract program."""

from __future__ import annotations

import shutil

import pytest
from PIL import Image

from docrerank.pages.ocr import OcrUnavailableError, check_tesseract, ocr_image, tesseract_version
from tests.helpers import SCAN, ingest_args, invoke_cli, read_errors


def test_tesseract_is_found_with_english():
    binary = check_tesseract("eng")
    assert binary == shutil.which("tesseract")
    assert tesseract_version().startswith("tesseract ")


def test_a_missing_language_is_a_clear_error():
    with pytest.raises(OcrUnavailableError) as info:
        check_tesseract("eng+zzz")
    message = str(info.value)
    assert "language(s) zzz:" in message  # only the missing one is named
    assert "apt-get install tesseract-ocr-zzz" in message


def test_ocr_image_reads_a_simple_rendered_line():
    with Image.open(SCAN) as scan:
        # the heading of the scanned page, cropped: one line of large text
        heading = scan.crop((150, 150, 1100, 260)).convert("RGB")
    text = ocr_image(heading)
    assert "statistics" in text and "Fstats" in text


def test_ocr_timeout_raises_timeout_error():
    with Image.open(SCAN) as scan:
        with pytest.raises(TimeoutError, match="Tesseract took more than"):
            ocr_image(scan.convert("RGB"), timeout_s=0.01)


def test_ocr_timeout_in_ingest_is_that_page_error(tmp_path, good_pdf):
    store = tmp_path / "store"
    result = invoke_cli(*ingest_args(SCAN, good_pdf, out=store, extra=("--ocr-timeout", "0.01", "--workers", "1")))
    assert result.exit_code == 1
    [entry] = read_errors(store)
    assert entry["file"] == str(SCAN)
    assert "timed out" in entry["reason"] and "--ocr-timeout" in entry["fix"]
