"""Tests of the generation pipeline's model-free steps: shared inputs (the committed sample pages)."""

from __future__ import annotations

from functools import lru_cache

import pypdfium2 as pdfium

from docrerank.pages.render import clean_text
from docrerank.pipeline.records import QueryRecord, query_id
from tests.helpers import PDF3


@lru_cache(maxsize=1)
def sample_texts() -> tuple[str, ...]:
    """The text layer of the committed sample (vignette pages 1, 3 and 13), cleaned the way ingest cleans it."""
    document = pdfium.PdfDocument(str(PDF3))
    try:
        texts = []
        for page in document:
            textpage = page.get_textpage()
            texts.append(clean_text(textpage.get_text_bounded()))
            textpage.close()
            page.close()
        return tuple(texts)
    finally:
        document.close()


def make_positive(text: str, page_id: str = "page-1") -> QueryRecord:
    return QueryRecord(
        query_id=query_id(page_id, "positive", text), page_id=page_id, kind="positive", text=text, generator="given"
    )


def make_negative(
    positive: QueryRecord, text: str, kind: str = "negative", generator: str = "llm:freeform", **fields
) -> QueryRecord:
    return QueryRecord(
        query_id=query_id(positive.page_id, kind, text, positive.query_id),
        page_id=positive.page_id,
        kind=kind,
        text=text,
        parent_id=positive.query_id,
        generator=generator,
        **fields,
    )
