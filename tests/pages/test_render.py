"""Rendering and text: real PDFs through pypdfium2, real images through Pillow, real Tesseract."""

from __future__ import annotations

import shutil

import pypdfium2 as pdfium
import pytest
from PIL import Image, features
from pypdf import PdfReader, PdfWriter
from reportlab.lib.pagesizes import A4, landscape

from docrerank.pages import IngestSettings, OcrMode, PageStore, TextSource, ingest
from docrerank.pages.render import clean_text
from tests.helpers import PDF3, SCAN, make_pdf, text_page

LIGATURE_CODES = set("\x1b\x1c\x1d\x1e\x1f\ufb00\ufb01\ufb02\ufb03\ufb04\ufb06")


def _ingest(inputs, out, **settings):
    report = ingest(inputs, out, IngestSettings(**settings), workers=1)
    assert report.ok, report.errors
    return report, PageStore.open(out)


def _pdf_pages(store):
    return sorted((p for p in store if p.source_path.endswith(".pdf")), key=lambda p: p.page_index)


# --- the committed pages (ingested once, OCR auto) ---------------------------------------------------


@pytest.mark.slow
def test_committed_pdf_gives_three_text_layer_pages(committed_store):
    pages = _pdf_pages(committed_store)
    assert [p.page_index for p in pages] == [0, 1, 2]
    assert {p.text_source for p in pages} == {TextSource.TEXT_LAYER}
    assert "strucchange: An R Package for Testing for Structural" in pages[0].text
    assert "Abstract" in pages[0].text
    assert "Figure 1: Personal income and personal consumption expenditures" in pages[1].text
    assert "structural break has been detected" in pages[2].text


def test_committed_pdf_pages_are_rendered_at_150_dpi(committed_store):
    document = pdfium.PdfDocument(str(PDF3))
    try:
        sizes = [document[i].get_size() for i in range(len(document))]
    finally:
        document.close()
    for page, (width_pt, height_pt) in zip(_pdf_pages(committed_store), sizes, strict=True):
        assert abs(page.width - width_pt * 150 / 72) <= 1
        assert abs(page.height - height_pt * 150 / 72) <= 1


def test_tex_ligatures_are_expanded(committed_store):
    # The vignette's fonts have no ToUnicode map: its text layer carries T1 codes for fi/ff/fl.
    document = pdfium.PdfDocument(str(PDF3))
    try:
        raw = document[0].get_textpage().get_text_bounded()
    finally:
        document.close()
    assert "signi\x1ccance" in raw  # the input really has them

    pages = _pdf_pages(committed_store)
    for page in pages:
        assert not LIGATURE_CODES & set(page.text), page.page_index
    words = set(pages[0].text.split())
    assert {"significance", "modified", "unified", "first"} <= words
    assert "significance" in pages[1].text and "specified" in pages[2].text


def test_clean_text():
    assert clean_text("signi\x1ccance, \ufb01nally, e\x1bect, \x1duid, o\x1ece, ba\x1fe") == (
        "significance, finally, effect, fluid, office, baffle"
    )
    assert clean_text("a\x0cb\x00c\r\nline   \nnext\rlast  ") == "abc\nline\nnext\nlast"


def test_scanned_png_is_ocred_in_auto_mode(committed_store):
    [page] = [p for p in committed_store if p.source_path.endswith(".png")]
    assert page.text_source is TextSource.OCR
    assert "Fstats" in page.text
    assert "statistics" in page.text
    with Image.open(SCAN) as image:
        assert (page.width, page.height) == image.size


# --- OCR modes ------------------------------------------------------------------------------------------


def test_scanned_png_without_ocr_has_no_text(tmp_path):
    _, store = _ingest([SCAN], tmp_path / "store", ocr=OcrMode.NEVER)
    [page] = list(store)
    assert page.text_source is TextSource.NONE
    assert page.text == ""


@pytest.mark.slow
def test_ocr_always_reads_pdf_pages_with_tesseract(tmp_path):
    first = tmp_path / "first-page.pdf"
    writer = PdfWriter()
    writer.add_page(PdfReader(str(PDF3)).pages[0])
    writer.write(str(first))
    report, store = _ingest([first], tmp_path / "store", ocr=OcrMode.ALWAYS)
    [page] = list(store)
    assert page.text_source is TextSource.OCR
    assert report.by_text_source == {"ocr": 1}
    assert "Structural" in page.text and "Abstract" in page.text
    assert "strucchange" in page.text


@pytest.mark.slow
def test_pdf_page_with_thin_text_layer_is_ocred_in_auto_mode(tmp_path):
    pdf = make_pdf(tmp_path / "scanned.pdf", ["p. 10"], scan_pages=(0,))  # a scan, captioned "p. 10"
    _, never = _ingest([pdf], tmp_path / "never", ocr=OcrMode.NEVER)
    [page] = list(never)
    assert (page.text_source, page.text) == (TextSource.TEXT_LAYER, "p. 10")

    _, auto = _ingest([pdf], tmp_path / "auto", ocr=OcrMode.AUTO)
    [page] = list(auto)
    assert page.text_source is TextSource.OCR
    assert "Fstats" in page.text and "statistics" in page.text

    # "p. 10" has 4 visible characters: enough when the threshold is 3, so no OCR then
    _, low = _ingest([pdf], tmp_path / "low", ocr=OcrMode.AUTO, min_text_chars=3)
    [page] = list(low)
    assert (page.text_source, page.text) == (TextSource.TEXT_LAYER, "p. 10")


def test_auto_mode_keeps_a_full_text_layer(tmp_path):
    pdf = make_pdf(tmp_path / "doc.pdf", [text_page("Plenty of text here")])
    report, store = _ingest([pdf], tmp_path / "store", ocr=OcrMode.AUTO)
    [page] = list(store)
    assert page.text_source is TextSource.TEXT_LAYER
    assert page.text.startswith("Plenty of text here\nPlenty of text here line 1: the quick brown fox")


def test_blank_page_has_no_text_in_auto_mode(tmp_path):
    # A blank page: the text layer is empty, and OCR finds nothing either.
    pdf = tmp_path / "blank.pdf"
    make_pdf(pdf, [""])
    _, store = _ingest([pdf], tmp_path / "store", ocr=OcrMode.AUTO)
    [page] = list(store)
    assert (page.text_source, page.text) == (TextSource.NONE, "")


# --- image formats --------------------------------------------------------------------------------------


def test_jpeg_webp_and_multi_frame_tiff(tmp_path):
    if not features.check("webp"):
        pytest.skip("this Pillow was built without WebP support")
    folder = tmp_path / "in"
    folder.mkdir()
    with Image.open(SCAN) as scan:
        scan = scan.convert("RGB")
    scan.save(folder / "scan.jpg", quality=85)
    scan.save(folder / "scan.webp", quality=80)
    small = scan.resize((620, 877))
    other = small.rotate(180)
    small.save(folder / "two.tiff", save_all=True, append_images=[other], compression="tiff_deflate")
    with Image.open(folder / "two.tiff") as tiff:
        assert tiff.n_frames == 2

    report, store = _ingest([folder], tmp_path / "store", ocr=OcrMode.NEVER)
    assert report.documents == 3 and report.pages_new == 4
    by_name: dict[str, list] = {}
    for page in store:
        by_name.setdefault(page.source_path.rsplit("/", 1)[1], []).append(page)
    assert sorted(by_name) == ["scan.jpg", "scan.webp", "two.tiff"]
    for name in ("scan.jpg", "scan.webp"):
        [page] = by_name[name]
        assert (page.page_index, page.width, page.height) == (0, scan.width, scan.height)
        assert page.text_source is TextSource.NONE
        with Image.open(store.image_path(page)) as stored:
            assert stored.format == "PNG" and stored.size == scan.size
    frames = sorted(by_name["two.tiff"], key=lambda p: p.page_index)
    assert [p.page_index for p in frames] == [0, 1]
    assert frames[0].page_id != frames[1].page_id
    assert all((p.width, p.height) == (620, 877) for p in frames)
    assert store.image(frames[1]).tobytes() == other.tobytes()


def test_multi_frame_tiff_pixels_are_counted_against_the_limit(tmp_path):
    frame = Image.new("L", (100, 100), 255)
    tiff = tmp_path / "pages.tiff"
    frame.save(tiff, save_all=True, append_images=[frame.rotate(90), Image.new("L", (100, 100), 0)])
    report = ingest(
        [tiff], tmp_path / "store", IngestSettings(ocr=OcrMode.NEVER, max_image_pixels=25_000),
        workers=1,
    )  # fmt: skip
    [error] = report.errors
    assert "30,000 pixels" in error.reason


# --- resolution and size caps ---------------------------------------------------------------------------


def test_dpi_scales_pdf_renders_proportionally(tmp_path):
    pdf = make_pdf(tmp_path / "doc.pdf", [text_page("Resolution")])
    _, low = _ingest([pdf], tmp_path / "dpi72", dpi=72, ocr=OcrMode.NEVER)
    _, high = _ingest([pdf], tmp_path / "dpi150", dpi=150, ocr=OcrMode.NEVER)
    [p72], [p150] = list(low), list(high)
    assert abs(p72.width - A4[0]) <= 1 and abs(p72.height - A4[1]) <= 1
    assert abs(p150.width - p72.width * 150 / 72) <= 2
    assert abs(p150.height - p72.height * 150 / 72) <= 2
    assert low.image(p72).size == (p72.width, p72.height)
    assert high.image(p150).size == (p150.width, p150.height)
    assert p72.text == p150.text


def test_max_side_caps_the_longest_side(tmp_path):
    portrait = make_pdf(tmp_path / "portrait.pdf", [text_page("Tall")])
    wide = make_pdf(tmp_path / "wide.pdf", [text_page("Wide")], pagesize=landscape(A4))
    scan = shutil.copy2(SCAN, tmp_path / "scan.png")
    _, store = _ingest([portrait, wide, scan], tmp_path / "store", dpi=150, max_side=600, ocr=OcrMode.NEVER)
    pages = {p.source_path.rsplit("/", 1)[1]: p for p in store}
    for name, page in pages.items():
        assert max(page.width, page.height) == 600, name
        assert store.image(page).size == (page.width, page.height)
    assert pages["portrait.pdf"].height == 600 and abs(pages["portrait.pdf"].width - 600 * A4[0] / A4[1]) <= 1
    assert pages["wide.pdf"].width == 600 and abs(pages["wide.pdf"].height - 600 * A4[0] / A4[1]) <= 1
    with Image.open(SCAN) as image:
        ratio = image.width / image.height
    assert abs(pages["scan.png"].width - 600 * ratio) <= 1
