"""The page record: one rendered page with its text, as stored in a page store."""

from __future__ import annotations

from enum import Enum

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["Page", "TextSource"]


class TextSource(str, Enum):
    """Where a page's text came from."""

    TEXT_LAYER = "text_layer"  # the PDF's own text layer (exact, fast)
    OCR = "ocr"  # Tesseract on the rendered image
    NONE = "none"  # no text: image input with OCR off, or nothing found


class Page(BaseModel):
    """One page of a document: the rendered image and its text.

    ``page_id`` is the content hash of the rendered image, so identical pages (a blank page, a repeated
    cover) share one id and are stored once. ``doc_id`` is the content hash of the source file, so the same
    file under two names is one document.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    page_id: str = Field(description="sha256 (first 32 hex digits) of the rendered image's pixels")
    doc_id: str = Field(description="sha256 (first 16 hex digits) of the source file's bytes")
    source_path: str = Field(description="the source file as given, made absolute")
    page_index: int = Field(ge=0, description="0-based page (PDF) or frame (TIFF) index in the source")
    width: int = Field(gt=0, description="rendered image width in pixels")
    height: int = Field(gt=0, description="rendered image height in pixels")
    text: str = Field(description="the page text: PDF text layer or OCR")
    text_source: TextSource
    image_path: str = Field(description="the image file, relative to the store root")
