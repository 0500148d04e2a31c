"""The command line as a user runs it: the installed console script in a subprocess (and Typer's runner)."""

from __future__ import annotations

import os
import subprocess

import pytest
from pypdf import PdfWriter

from docrerank import __version__
from docrerank.pages import PageStore
from tests.helpers import (
    PDF3,
    docrerank_command,
    ingest_args,
    invoke_cli,
    read_errors,
    report_number,
    run_cli,
)


def test_version():
    result = invoke_cli("--version")
    assert result.exit_code == 0
    assert result.stdout.strip() == f"docrerank {__version__}"


@pytest.mark.slow
def test_ingest_prints_a_summary_and_exits_0(tmp_path, good_pdf):
    store = tmp_path / "store"
    result = run_cli(*ingest_args(PDF3, good_pdf, out=store, extra=("--ocr", "never")))
    assert result.exit_code == 0, result.stderr
    assert report_number(result.stdout, "documents in this run") == 2
    assert report_number(result.stdout, "pages ingested now") == 5
    assert report_number(result.stdout, "pages in store") == 5
    assert report_number(result.stdout, "text from PDF text layer") == 5
    assert report_number(result.stdout, "errors") == 0
    assert read_errors(store) == []
    assert len(PageStore.open(store)) == 5


@pytest.mark.slow
def test_errors_are_listed_in_the_output(tmp_path, good_pdf):
    bad = tmp_path / "cut.pdf"
    bad.write_bytes(PDF3.read_bytes()[:40_000])
    store = tmp_path / "store"
    result = run_cli(*ingest_args(bad, good_pdf, out=store, extra=("--ocr", "never")))
    assert result.exit_code == 1
    assert report_number(result.stdout, "errors") == 1
    assert "errors (also in" in result.stdout
    assert "cut.pdf" in result.stdout and "truncated" in result.stdout
    assert "download or copy the file again" in result.stdout


@pytest.mark.slow
def test_password_from_the_environment(tmp_path):
    pdf = tmp_path / "locked.pdf"
    writer = PdfWriter(clone_from=str(PDF3))
    writer.encrypt("open sesame", algorithm="RC4-128")
    writer.write(str(pdf))
    store = tmp_path / "store"
    env = {**os.environ, "DOCRERANK_PDF_PASSWORD": "open sesame"}
    command = [*docrerank_command(), *map(str, ingest_args(pdf, out=store, extra=("--ocr", "never")))]
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    assert len(PageStore.open(store)) == 3


@pytest.mark.slow
def test_other_settings_than_the_store_exit_2_naming_them(tmp_path):
    store = tmp_path / "store"
    first = run_cli(*ingest_args(PDF3, out=store, extra=("--ocr", "never", "--dpi", "150")))
    assert first.exit_code == 0, first.stderr
    before = (store / "pages.parquet").read_bytes()
    result = run_cli(*ingest_args(PDF3, out=store, extra=("--ocr", "never", "--dpi", "100")))
    assert result.exit_code == 2
    error = " ".join(result.stderr.split())
    assert "error:" in error and "dpi: store has 150, now 100" in error
    assert "Traceback" not in result.stderr
    assert (store / "pages.parquet").read_bytes() == before


def test_a_missing_ocr_language_exits_2(tmp_path):
    result = run_cli(*ingest_args(PDF3, out=tmp_path / "store", extra=("--ocr-lang", "zzz")))
    assert result.exit_code == 2
    assert "tesseract-ocr-zzz" in " ".join(result.stderr.split())
    assert "Traceback" not in result.stderr


def test_an_invalid_setting_exits_2(tmp_path):
    result = run_cli(*ingest_args(PDF3, out=tmp_path / "store", extra=("--dpi", "5")))
    assert result.exit_code == 2
    assert "dpi" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "store" / "pages.parquet").exists()


def test_usage_errors_exit_2(tmp_path):
    assert invoke_cli("ingest", PDF3).exit_code == 2  # no --out
    assert invoke_cli("ingest", PDF3, "--out", tmp_path, "--ocr", "sometimes").exit_code == 2
    assert invoke_cli("nonsense").exit_code == 2
