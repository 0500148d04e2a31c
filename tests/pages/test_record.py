"""The page record."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from docrerank.pages import Page, TextSource

FIELDS = dict(
    page_id="a" * 32,
    doc_id="b" * 16,
    source_path="/x/doc.pdf",
    page_index=0,
    width=100,
    height=140,
    text="hello",
    text_source="text_layer",
    image_path="images/aa/" + "a" * 32 + ".png",
)


def test_page_from_stored_values():
    page = Page(**FIELDS)
    assert page.text_source is TextSource.TEXT_LAYER
    with pytest.raises(ValidationError):
        page.text = "changed"  # frozen


@pytest.mark.parametrize("bad", [{"page_index": -1}, {"width": 0}, {"text_source": "guess"}, {"extra": 1}])
def test_invalid_page_records_are_refused(bad):
    with pytest.raises(ValidationError):
        Page(**{**FIELDS, **bad})
