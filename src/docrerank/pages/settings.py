"""Ingest settings: what decides how a page is rendered and where its text comes from.

The settings that change the output (``output_fields``) are written to the store's manifest; a later ingest
into the same store must use the same ones, or pages of two renderings would be mixed.
"""

from __future__ import annotations

import hashlib
import json
from enum import Enum
from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["IngestSettings", "OcrMode"]


class OcrMode(str, Enum):
    """When to run OCR on a page."""

    NEVER = "never"  # text layer only; image inputs get no text
    AUTO = "auto"  # OCR pages whose text layer is missing or thinner than ``min_text_chars``
    ALWAYS = "always"  # OCR every page, ignoring the text layer


class IngestSettings(BaseModel):
    """How pages are rendered and read."""

    model_config = ConfigDict(extra="forbid")

    dpi: int = Field(150, ge=36, le=600, description="PDF render resolution")
    max_side: int = Field(2048, ge=256, le=20000, description="cap on the longest image side, in pixels")
    ocr: OcrMode = OcrMode.AUTO
    min_text_chars: int = Field(
        40, ge=0, description="auto mode: a text layer with fewer non-space characters is OCRed"
    )
    ocr_dpi: int = Field(300, ge=72, le=600, description="PDF pages are rendered again at this DPI for OCR")
    ocr_max_side: int = Field(4000, ge=256, le=20000, description="cap on the longest side of OCR renders")
    ocr_lang: str = Field("eng", description="Tesseract language(s), e.g. 'eng' or 'eng+deu'")
    ocr_timeout_s: float = Field(120.0, gt=0, description="per page; a page past it gets an error")
    max_image_pixels: int = Field(
        89_478_485, gt=0, description="image inputs above this many pixels are refused (decompression bomb)"
    )
    pages_per_unit: int = Field(8, ge=1, description="pages per unit of work: the resume granularity")
    password: str | None = Field(None, description="password for encrypted PDFs", repr=False)

    # Fields that change what is stored; the rest (passwords, scheduling) do not.
    output_fields: ClassVar[tuple[str, ...]] = (
        "dpi",
        "max_side",
        "ocr",
        "min_text_chars",
        "ocr_dpi",
        "ocr_max_side",
        "ocr_lang",
    )

    def output_settings(self) -> dict:
        """The settings that decide the stored output, as plain JSON values."""
        data = self.model_dump(mode="json")
        return {name: data[name] for name in self.output_fields}

    def fingerprint(self) -> str:
        """A short hash of ``output_settings``: units of work made with other settings are not reused."""
        blob = json.dumps(self.output_settings(), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]
