"""Pages: documents in, a page store (images, text, records) out."""

from docrerank.pages.content import PageContent, PageLike
from docrerank.pages.ingest import IngestReport, ingest
from docrerank.pages.record import Page, TextSource
from docrerank.pages.settings import IngestSettings, OcrMode
from docrerank.pages.store import PageStore

__all__ = [
    "IngestReport",
    "IngestSettings",
    "OcrMode",
    "Page",
    "PageContent",
    "PageLike",
    "PageStore",
    "TextSource",
    "ingest",
]
