"""Turning source files into page images and text: PDF pages with pypdfium2, image files with Pillow.

Everything here runs inside worker processes; PDFium is not thread-safe, so each process opens its own
document. Errors about a whole file are raised as ``InputError`` by ``open_pdf``/``open_image``; errors
about one page are raised by ``render_pdf_page`` and recorded for that page only.
"""

from __future__ import annotations

import hashlib
import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import pypdfium2 as pdfium
from PIL import Image, ImageOps, ImageSequence

from docrerank.errors import InputError
from docrerank.pages.ocr import ocr_image
from docrerank.pages.record import TextSource
from docrerank.pages.settings import IngestSettings, OcrMode
from docrerank.pages.sources import Source, display_path

__all__ = [
    "RenderedPage",
    "image_hash",
    "open_image",
    "open_pdf",
    "pdf_page_count",
    "render_image_frames",
    "render_pdf_page",
]

_PDF_TAIL_BYTES = 2048


@dataclass
class RenderedPage:
    """A page as rendered, before it is written to the store."""

    index: int
    image: Image.Image
    text: str
    text_source: TextSource


def image_hash(image: Image.Image) -> str:
    """Content hash of an image's pixels (mode and size included), independent of the file encoding."""
    digest = hashlib.sha256(f"{image.mode}:{image.width}x{image.height}:".encode())
    digest.update(image.tobytes())
    return digest.hexdigest()[:32]


# Ligatures: Unicode presentation forms, and the T1 (Cork) font codes that TeX-made PDFs leave in their
# text layer when the font has no ToUnicode map ("signi\x1ccance" is "significance").
_LIGATURES = str.maketrans(
    {
        "\ufb00": "ff", "\ufb01": "fi", "\ufb02": "fl", "\ufb03": "ffi", "\ufb04": "ffl", "\ufb06": "st",
        "\x1b": "ff", "\x1c": "fi", "\x1d": "fl", "\x1e": "ffi", "\x1f": "ffl",
        "\x10": "\u201c", "\x11": "\u201d", "\x15": "\u2013", "\x16": "\u2014",  # T1 quotes and dashes
    }
)  # fmt: skip


def clean_text(text: str) -> str:
    """Normalise line ends, expand ligatures, drop control characters (form feeds, NULs)."""
    text = text.replace("\r\n", "\n").replace("\r", "\n").translate(_LIGATURES)
    text = re.sub(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ufffe\uffff]", "", text)
    text = re.sub(r"[ \t]+\n", "\n", text)
    return text.strip()


def _visible_chars(text: str) -> int:
    return sum(1 for ch in text if not ch.isspace())


def _opens_with_no_pages(path, password: str | None) -> bool:
    """Whether PDFium opens the file and finds no pages. pypdfium2 refuses such a document as a load
    failure, with PDFium's last error code, which is stale then (left by an earlier failure in this
    process, e.g. "Incorrect password"), so it is asked again here."""
    raw = pdfium.raw
    secret = None if password is None else (password + "\x00").encode("utf-8")
    handle = raw.FPDF_LoadDocument((str(path) + "\x00").encode("utf-8"), secret)
    if not handle:
        return False
    try:
        return raw.FPDF_GetPageCount(handle) == 0
    finally:
        raw.FPDF_CloseDocument(handle)


def open_pdf(source: Source, password: str | None = None) -> pdfium.PdfDocument:
    """Open a PDF, or raise ``InputError`` for encrypted, truncated, corrupt and zero-page files."""
    shown = display_path(source.path)
    with open(source.path, "rb") as handle:
        handle.seek(max(0, source.size - _PDF_TAIL_BYTES))
        tail = handle.read()
    if b"%%EOF" not in tail:
        raise InputError(
            shown,
            "PDF is truncated (no %%EOF marker at its end): the download or copy was cut short",
            "download or copy the file again",
        )
    try:
        document = pdfium.PdfDocument(str(source.path), password=password)
    except pdfium.PdfiumError as exc:
        if _opens_with_no_pages(source.path, password):
            raise InputError(shown, "PDF has no pages", "remove it from the inputs or re-create it") from None
        message = str(exc)
        if "password" in message.lower():
            if password:
                raise InputError(
                    shown,
                    "PDF is encrypted and the given password is wrong",
                    "pass the right password with --password",
                ) from None
            raise InputError(
                shown,
                "PDF is encrypted and no password was given",
                "pass it with --password, or decrypt the file (`qpdf --decrypt --password=PW in.pdf out.pdf`)",
            ) from None
        raise InputError(
            shown,
            f"PDF is corrupt and PDFium cannot read it ({message})",
            "re-create or re-download it; `qpdf --check FILE` shows what is broken",
        ) from None
    if len(document) == 0:
        document.close()
        raise InputError(shown, "PDF has no pages", "remove it from the inputs or re-create it")
    return document


def pdf_page_count(source: Source, password: str | None = None) -> int:
    """The number of pages, after the checks of ``open_pdf``."""
    document = open_pdf(source, password)
    try:
        return len(document)
    finally:
        document.close()


def _render_scale(width_pt: float, height_pt: float, dpi: int, max_side: int) -> float:
    """Pixels per PDF point at ``dpi``, lowered so that the longest side fits in ``max_side``."""
    scale = dpi / 72.0
    longest = max(width_pt, height_pt) * scale
    if longest > max_side:
        scale *= max_side / longest
    return scale


def _to_rgb(bitmap: pdfium.PdfBitmap) -> Image.Image:
    image = bitmap.to_pil()
    return image if image.mode == "RGB" else image.convert("RGB")


def _read_text(text_layer: str, ocr: Callable[[], str], settings: IngestSettings) -> tuple[str, TextSource]:
    """Choose the page text: the text layer, OCR, or whichever the mode allows and holds more."""
    if settings.ocr is OcrMode.NEVER:
        return text_layer, TextSource.TEXT_LAYER if text_layer else TextSource.NONE
    if settings.ocr is OcrMode.AUTO and _visible_chars(text_layer) >= settings.min_text_chars:
        return text_layer, TextSource.TEXT_LAYER
    ocr_text = clean_text(ocr())
    if settings.ocr is OcrMode.ALWAYS or _visible_chars(ocr_text) > _visible_chars(text_layer):
        return ocr_text, TextSource.OCR if ocr_text else TextSource.NONE
    return text_layer, TextSource.TEXT_LAYER if text_layer else TextSource.NONE


def render_pdf_page(document: pdfium.PdfDocument, index: int, settings: IngestSettings) -> RenderedPage:
    """Render one page, read its text layer, and OCR it when the settings ask for it."""
    page = document[index]
    try:
        width_pt, height_pt = page.get_size()
        scale = _render_scale(width_pt, height_pt, settings.dpi, settings.max_side)
        image = _to_rgb(page.render(scale=scale))
        textpage = page.get_textpage()
        try:
            text_layer = clean_text(textpage.get_text_bounded())
        finally:
            textpage.close()

        def ocr() -> str:
            # OCR reads a sharper rendering than the stored one: Tesseract wants ~300 DPI.
            ocr_scale = _render_scale(width_pt, height_pt, settings.ocr_dpi, settings.ocr_max_side)
            sharp = image if ocr_scale <= scale else _to_rgb(page.render(scale=ocr_scale))
            return ocr_image(sharp, settings.ocr_lang, settings.ocr_timeout_s)

        text, source = _read_text(text_layer, ocr, settings)
        return RenderedPage(index=index, image=image, text=text, text_source=source)
    finally:
        page.close()


def open_image(source: Source, settings: IngestSettings) -> Image.Image:
    """Open an image file lazily, refusing images over the pixel limit before decoding them."""
    shown = display_path(source.path)
    fix = (
        "downscale the image (e.g. `convert IN -resize 4000x4000 OUT`), or raise --max-image-pixels "
        "if you trust the file"
    )
    pillow_limit = Image.MAX_IMAGE_PIXELS
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            if pillow_limit is not None:
                # Pillow's own guard must not be stricter than the setting, or --max-image-pixels could
                # never be raised; the setting itself is applied below, with the pixel count.
                Image.MAX_IMAGE_PIXELS = max(pillow_limit, settings.max_image_pixels)
            image = Image.open(source.path)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise InputError(shown, "image is over Pillow's decompression-bomb limit", fix) from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise InputError(shown, f"image cannot be decoded ({exc})", "re-create or re-export the image") from None
    finally:
        Image.MAX_IMAGE_PIXELS = pillow_limit
    pixels = image.width * image.height * getattr(image, "n_frames", 1)
    if pixels > settings.max_image_pixels:
        image.close()
        raise InputError(
            shown,
            f"image has {pixels:,} pixels, over the limit of {settings.max_image_pixels:,} "
            "(a guard against decompression bombs)",
            fix,
        )
    return image


def render_image_frames(source: Source, settings: IngestSettings) -> list[RenderedPage]:
    """Every frame of an image file (one for PNG/JPEG, several for a multi-page TIFF) as a page."""
    image = open_image(source, settings)
    pages = []
    try:
        for index, frame in enumerate(ImageSequence.Iterator(image)):
            try:
                full = ImageOps.exif_transpose(frame.convert("RGB"))
            except OSError as exc:
                raise InputError(
                    f"{display_path(source.path)}#page{index + 1}",
                    f"image data is truncated or corrupt ({exc})",
                    "re-create or re-export the image",
                ) from None
            stored = full.copy()
            if max(stored.size) > settings.max_side:
                stored.thumbnail((settings.max_side, settings.max_side), Image.Resampling.LANCZOS)

            def ocr(full: Image.Image = full) -> str:
                return ocr_image(full, settings.ocr_lang, settings.ocr_timeout_s)

            text, text_source = _read_text("", ocr, settings)
            pages.append(RenderedPage(index=index, image=stored, text=text, text_source=text_source))
    finally:
        image.close()
    return pages
