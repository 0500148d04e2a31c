"""Input discovery: folders walked recursively, files classified by content, one error per bad file."""

from __future__ import annotations

import os
import shutil

import pytest

from docrerank.errors import InputError
from docrerank.pages.sources import check_source, discover, display_path
from tests.helpers import PDF3, SCAN


def test_folders_are_walked_recursively_in_sorted_order(tmp_path):
    deep = tmp_path / "in" / "b" / "c"
    deep.mkdir(parents=True)
    shutil.copy2(PDF3, deep / "deep.pdf")
    shutil.copy2(SCAN, tmp_path / "in" / "top.PNG")  # extensions are matched case-insensitively
    (tmp_path / "in" / "a").mkdir()
    (tmp_path / "in" / "a" / "notes.txt").write_text("unrelated")  # skipped silently inside folders
    sources, errors = discover([tmp_path / "in"])
    assert errors == []
    # top-down: a folder's own files (sorted), then its subfolders (sorted)
    assert [s.path for s in sources] == [tmp_path / "in" / "top.PNG", deep / "deep.pdf"]
    assert [s.kind for s in sources] == ["image", "pdf"]


def test_same_content_under_two_names_is_one_source(tmp_path):
    a = shutil.copy2(PDF3, tmp_path / "a.pdf")
    shutil.copy2(PDF3, tmp_path / "b.pdf")
    sources, errors = discover([tmp_path, a])
    assert errors == []
    assert [s.path for s in sources] == [a]
    assert sources[0].size == PDF3.stat().st_size
    assert len(sources[0].doc_id) == 16


def test_a_named_file_with_an_unsupported_extension_is_an_error(tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("hello")
    sources, [error] = discover([notes])
    assert sources == []
    assert error.item == str(notes) and "unsupported file type '.txt'" in error.reason
    assert "PDF, PNG, JPEG, TIFF or WebP" in error.fix


def test_an_image_extension_with_other_content_is_an_error(tmp_path):
    fake = tmp_path / "page.jpg"
    shutil.copy2(PDF3, fake)
    _, [error] = discover([fake])
    assert "content looks like a PDF" in error.reason


def test_a_docx_named_pdf_is_recognised(tmp_path):
    fake = tmp_path / "report.pdf"
    fake.write_bytes(b"PK\x03\x04" + bytes(100))
    _, [error] = discover([fake])
    assert "ZIP archive" in error.reason


def test_a_missing_input_is_an_error_and_the_others_go_on(tmp_path):
    sources, [error] = discover([tmp_path / "nope", PDF3])
    assert [s.path for s in sources] == [PDF3]
    assert error.item == str(tmp_path / "nope") and "no such file or folder" in error.reason


def test_a_folder_symlink_loop_does_not_hang(tmp_path):
    (tmp_path / "in").mkdir()
    shutil.copy2(PDF3, tmp_path / "in" / "doc.pdf")
    (tmp_path / "in" / "loop").symlink_to(tmp_path / "in")
    sources, errors = discover([tmp_path / "in"])
    assert [s.path.name for s in sources] == ["doc.pdf"] and errors == []


def test_display_path_escapes_bytes_that_are_not_utf8():
    assert display_path(os.fsdecode(b"/x/bad-\xff.pdf")) == "/x/bad-\\xff.pdf"
    assert display_path(b"/x/caf\xc3\xa9.pdf") == "/x/caf\u00e9.pdf"


def test_check_source_refuses_a_non_utf8_name(tmp_path):
    path = os.path.join(os.fsencode(tmp_path), b"r\xe9sum\xe9.pdf")
    with open(path, "wb") as handle:
        handle.write(PDF3.read_bytes())
    sources, [error] = discover([tmp_path])
    assert sources == []
    assert error.item == f"{tmp_path}/r\\xe9sum\\xe9.pdf"
    assert "not valid UTF-8" in error.reason and "convmv" in error.fix


def test_check_source_of_a_folder_is_not_a_regular_file(tmp_path):
    folder = tmp_path / "x.pdf"
    folder.mkdir()
    with pytest.raises(InputError, match="not a regular file"):
        check_source(folder)
