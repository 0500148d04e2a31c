"""Bad inputs through the CLI: each one becomes exactly one line in STORE/errors.jsonl (file, reason, fix),
the good inputs of the same call are still ingested, and the exit code is 1.

Some run as a real subprocess (the installed console script), some in-process with Typer's runner.
"""

from __future__ import annotations

import os
import random
import shutil

import pytest
from PIL import Image
from pypdf import PdfWriter

from docrerank.pages import PageStore
from tests.helpers import (
    DROP_READ_OVERRIDE,
    PDF3,
    SCAN,
    assert_bad_input_run,
    ingest_args,
    invoke_cli,
    read_errors,
    run_cli,
)

NEVER = ("--ocr", "never", "--workers", "1")


def test_corrupt_pdf(tmp_path, good_pdf):
    bad = tmp_path / "corrupt.pdf"
    garbage = random.Random(7).randbytes(8000).replace(b"%%EOF", b"xxxxx")
    bad.write_bytes(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n" + garbage + b"\n%%EOF\n")
    store = tmp_path / "store"
    result = invoke_cli(*ingest_args(bad, good_pdf, out=store, extra=NEVER))
    entry = assert_bad_input_run(result, store, str(bad), {good_pdf: 2}, ("corrupt",))
    assert "qpdf --check" in entry["fix"]


@pytest.mark.slow
def test_corrupt_pdf_subprocess(tmp_path, good_pdf):
    bad = tmp_path / "corrupt.pdf"
    # A real PDF's header and trailer around a garbage body.
    data = PDF3.read_bytes()
    body = random.Random(8).randbytes(len(data) - 2048).replace(b"%%EOF", b"xxxxx")
    bad.write_bytes(data[:1024] + body + data[-1024:])
    store = tmp_path / "store"
    result = run_cli(*ingest_args(bad, good_pdf, out=store, extra=NEVER))
    assert_bad_input_run(result, store, str(bad), {good_pdf: 2}, ("corrupt",))


def test_truncated_pdf(tmp_path, good_pdf):
    data = PDF3.read_bytes()
    bad = tmp_path / "truncated.pdf"
    bad.write_bytes(data[: len(data) // 2])
    store = tmp_path / "store"
    result = invoke_cli(*ingest_args(bad, good_pdf, out=store, extra=NEVER))
    entry = assert_bad_input_run(result, store, str(bad), {good_pdf: 2}, ("truncated",))
    assert "again" in entry["fix"]


def _encrypt(path, password: str):
    writer = PdfWriter(clone_from=str(PDF3))
    writer.encrypt(password, algorithm="RC4-128")
    writer.write(str(path))
    return path


@pytest.mark.slow
def test_encrypted_pdf_without_password(tmp_path, good_pdf):
    bad = _encrypt(tmp_path / "encrypted.pdf", "s3cret")
    store = tmp_path / "store"
    result = run_cli(*ingest_args(bad, good_pdf, out=store, extra=NEVER))
    entry = assert_bad_input_run(result, store, str(bad), {good_pdf: 2}, ("encrypted", "no password"))
    assert "--password" in entry["fix"]


def test_encrypted_pdf_with_wrong_password(tmp_path, good_pdf):
    bad = _encrypt(tmp_path / "encrypted.pdf", "s3cret")
    store = tmp_path / "store"
    result = invoke_cli(*ingest_args(bad, good_pdf, out=store, extra=(*NEVER, "--password", "wrong")))
    entry = assert_bad_input_run(result, store, str(bad), {good_pdf: 2}, ("encrypted", "wrong"))
    assert "--password" in entry["fix"]


@pytest.mark.slow
def test_encrypted_pdf_with_the_right_password_is_ingested(tmp_path, good_pdf):
    pdf = _encrypt(tmp_path / "encrypted.pdf", "s3cret")
    store = tmp_path / "store"
    result = run_cli(*ingest_args(pdf, good_pdf, out=store, extra=(*NEVER, "--password", "s3cret")))
    assert result.exit_code == 0, result.stdout + result.stderr
    assert (store / "errors.jsonl").read_text() == ""
    opened = PageStore.open(store)
    pages = sorted((p for p in opened if p.source_path == str(pdf)), key=lambda p: p.page_index)
    assert [p.page_index for p in pages] == [0, 1, 2]
    assert len(opened) == 5
    assert "strucchange" in pages[0].text
    # the password is not a setting of the output: it is not written to the manifest
    assert "s3cret" not in (store / "manifest.json").read_text()


def test_zero_page_pdf(tmp_path, good_pdf):
    bad = tmp_path / "empty.pdf"
    PdfWriter().write(str(bad))  # a valid PDF whose page tree has no pages
    store = tmp_path / "store"
    result = invoke_cli(*ingest_args(bad, good_pdf, out=store, extra=NEVER))
    entry = assert_bad_input_run(result, store, str(bad), {good_pdf: 2}, ("no pages",))
    assert "corrupt" not in entry["reason"]


def test_text_file_named_pdf(tmp_path, good_pdf):
    bad = tmp_path / "notes.pdf"
    bad.write_text("These are meeting notes, not a PDF.\n")
    store = tmp_path / "store"
    result = invoke_cli(*ingest_args(bad, good_pdf, out=store, extra=NEVER))
    entry = assert_bad_input_run(result, store, str(bad), {good_pdf: 2}, ("not a pdf", "text"))
    assert "rename" in entry["fix"]


@pytest.mark.slow
def test_png_named_pdf(tmp_path, good_pdf):
    bad = tmp_path / "scan.pdf"
    shutil.copy2(SCAN, bad)
    store = tmp_path / "store"
    result = run_cli(*ingest_args(bad, good_pdf, out=store, extra=NEVER))
    entry = assert_bad_input_run(result, store, str(bad), {good_pdf: 2}, ("not a pdf", "png"))
    assert "extension" in entry["fix"]


@pytest.mark.slow
def test_decompression_bomb_image(tmp_path, good_pdf):
    bad = tmp_path / "bomb.png"
    Image.new("1", (20000, 12000)).save(bad, optimize=True)  # 240 million pixels in a tiny file
    assert bad.stat().st_size < 100_000
    store = tmp_path / "store"
    result = run_cli(*ingest_args(bad, good_pdf, out=store, extra=NEVER))
    entry = assert_bad_input_run(result, store, str(bad), {good_pdf: 2}, ("decompression",))
    assert "--max-image-pixels" in entry["fix"]


def test_image_over_a_lowered_pixel_limit(tmp_path, good_pdf):
    bad = tmp_path / "page.png"
    shutil.copy2(SCAN, bad)
    store = tmp_path / "store"
    result = invoke_cli(*ingest_args(bad, good_pdf, out=store, extra=(*NEVER, "--max-image-pixels", "1000000")))
    with Image.open(SCAN) as image:
        pixels = image.width * image.height
    entry = assert_bad_input_run(result, store, str(bad), {good_pdf: 2}, (f"{pixels:,}", "1,000,000"))
    assert "--max-image-pixels" in entry["fix"]


@pytest.mark.slow
def test_raising_the_pixel_limit_lets_a_trusted_large_image_in(tmp_path):
    # 9460 x 9460 = 89,491,600 pixels: just over Pillow's default limit (89,478,485), which it refuses.
    big = tmp_path / "big.png"
    Image.new("1", (9460, 9460), 1).save(big)
    refused = run_cli(*ingest_args(big, out=tmp_path / "refused", extra=NEVER))
    assert refused.exit_code == 1
    raised = ("--max-image-pixels", "100000000", "--max-side", "1024")
    result = run_cli(*ingest_args(big, out=tmp_path / "store", extra=(*NEVER, *raised)))
    assert result.exit_code == 0, result.stdout + result.stderr
    [page] = list(PageStore.open(tmp_path / "store"))
    assert (page.width, page.height) == (1024, 1024)


def _bad_utf8_pdf(folder) -> bytes:
    """A valid PDF under a name that is not UTF-8 (a Latin-1 byte); returns its path as bytes."""
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(os.fsencode(folder), b"bad-\xff.pdf")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        os.write(fd, PDF3.read_bytes())
    finally:
        os.close(fd)
    return path


@pytest.mark.slow
def test_file_name_not_utf8_in_a_folder(tmp_path):
    folder = tmp_path / "in"
    _bad_utf8_pdf(folder)
    good = shutil.copy2(PDF3, folder / "good.pdf")
    store = tmp_path / "store"
    result = run_cli(*ingest_args(folder, out=store, extra=NEVER))
    entry = assert_bad_input_run(result, store, f"{folder}/bad-\\xff.pdf", {good: 3}, ("not valid utf-8",))
    assert "rename" in entry["fix"]


@pytest.mark.slow
def test_file_name_not_utf8_given_directly(tmp_path, good_pdf):
    bad = _bad_utf8_pdf(tmp_path / "in")
    store = tmp_path / "store"
    result = run_cli(*ingest_args(bad, good_pdf, out=store, extra=NEVER))
    assert_bad_input_run(result, store, f"{tmp_path}/in/bad-\\xff.pdf", {good_pdf: 2}, ("utf-8",))


def _without_read_override() -> list[str]:
    """A command prefix under which permission bits apply (root reads any file otherwise)."""
    if os.geteuid() != 0:
        return []
    if shutil.which("setpriv") is None:
        pytest.skip("running as root and setpriv (util-linux) is missing: cannot make a file unreadable to root")
    return DROP_READ_OVERRIDE


@pytest.mark.slow
def test_unreadable_file(tmp_path, good_pdf):
    bad = tmp_path / "locked.pdf"
    shutil.copy2(PDF3, bad)
    bad.chmod(0)
    prefix = _without_read_override()
    store = tmp_path / "store"
    try:
        result = run_cli(*ingest_args(bad, good_pdf, out=store, extra=NEVER), prefix=prefix)
    finally:
        bad.chmod(0o644)
    entry = assert_bad_input_run(result, store, str(bad), {good_pdf: 2}, ("permission denied",))
    assert "chmod" in entry["fix"]


@pytest.mark.slow
def test_unreadable_file_in_a_folder(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    bad = folder / "a-locked.pdf"
    shutil.copy2(PDF3, bad)
    bad.chmod(0)
    good = shutil.copy2(SCAN, folder / "b-scan.png")
    prefix = _without_read_override()
    store = tmp_path / "store"
    try:
        result = run_cli(*ingest_args(folder, out=store, extra=NEVER), prefix=prefix)
    finally:
        bad.chmod(0o644)
    assert_bad_input_run(result, store, str(bad), {good: 1}, ("permission denied",))


@pytest.mark.slow
def test_dangling_symlink(tmp_path, good_pdf):
    bad = tmp_path / "link.pdf"
    bad.symlink_to(tmp_path / "gone.pdf")
    store = tmp_path / "store"
    result = run_cli(*ingest_args(bad, good_pdf, out=store, extra=NEVER))
    assert_bad_input_run(result, store, str(bad), {good_pdf: 2}, ("does not exist",))


def test_dangling_symlink_in_a_folder(tmp_path, good_pdf):
    folder = tmp_path / "in"
    folder.mkdir()
    bad = folder / "link.png"
    bad.symlink_to(folder / "gone.png")
    store = tmp_path / "store"
    result = invoke_cli(*ingest_args(folder, good_pdf, out=store, extra=NEVER))
    assert_bad_input_run(result, store, str(bad), {good_pdf: 2}, ("symlink",))


def test_missing_path(tmp_path, good_pdf):
    bad = tmp_path / "no-such.pdf"
    store = tmp_path / "store"
    result = invoke_cli(*ingest_args(bad, good_pdf, out=store, extra=NEVER))
    assert_bad_input_run(result, store, str(bad), {good_pdf: 2}, ("no such file",))


def test_empty_file(tmp_path, good_pdf):
    bad = tmp_path / "empty.png"
    bad.write_bytes(b"")
    store = tmp_path / "store"
    result = invoke_cli(*ingest_args(bad, good_pdf, out=store, extra=NEVER))
    assert_bad_input_run(result, store, str(bad), {good_pdf: 2}, ("empty",))


def test_truncated_image(tmp_path, good_pdf):
    bad = tmp_path / "cut.png"
    data = SCAN.read_bytes()
    bad.write_bytes(data[: len(data) // 2])
    store = tmp_path / "store"
    result = invoke_cli(*ingest_args(bad, good_pdf, out=store, extra=NEVER))
    # the error names the file and the frame (0 for a single-frame image)
    entry = assert_bad_input_run(result, store, f"{bad}#page1", {good_pdf: 2}, ("truncated",))
    assert "re-create" in entry["fix"]


def test_several_bad_inputs_each_get_one_line(tmp_path, good_pdf):
    truncated = tmp_path / "truncated.pdf"
    truncated.write_bytes(PDF3.read_bytes()[:50_000])
    notes = tmp_path / "notes.pdf"
    notes.write_text("not a pdf\n")
    store = tmp_path / "store"
    result = invoke_cli(*ingest_args(truncated, good_pdf, notes, out=store, extra=NEVER))
    assert result.exit_code == 1
    assert sorted(e["file"] for e in read_errors(store)) == sorted([str(truncated), str(notes)])
    assert len(PageStore.open(store)) == 2
