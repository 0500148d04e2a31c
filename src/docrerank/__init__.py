"""docrerank: hard negative queries for document pages (DocReRank), and rerankers trained with them."""

__version__ = "0.1.0"

from docrerank.errors import DocrerankError, InputError  # noqa: E402
from docrerank.pages import IngestReport, IngestSettings, OcrMode, Page, PageStore, TextSource, ingest  # noqa: E402

__all__ = [
    "DocrerankError",
    "IngestReport",
    "IngestSettings",
    "InputError",
    "OcrMode",
    "Page",
    "PageStore",
    "TextSource",
    "__version__",
    "ingest",
]
