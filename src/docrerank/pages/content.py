"""What a prompt or a reranker reads of a page: its text, its image when one is loaded, its id.

Every layer takes a page in any of the ``PageLike`` forms: a ``PageContent``, a stored ``Page``, or bare text.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from docrerank.errors import DocrerankError
from docrerank.pages.record import Page

if TYPE_CHECKING:
    from docrerank.backends.messages import ImagePart

__all__ = ["PageContent", "PageLike"]


@dataclass(frozen=True)
class PageContent:
    """What a prompt can show of a page: its text, and its image when there is one to show."""

    text: str
    image: ImagePart | None = None
    page_id: str | None = None

    @classmethod
    def from_page(cls, page: Page, store: Any = None, image: bool = False) -> PageContent:
        """A stored page's text, and with ``image=True`` its image, read from ``store`` (a ``PageStore``)."""
        if not image:
            return cls(text=page.text, page_id=page.page_id)
        if store is None:
            raise DocrerankError(
                f"page {page.page_id}: its image is in the page store; pass the store to read it "
                "(PageContent.from_page(page, store, image=True))"
            )
        # imported here: importing the backends package would load every backend's module into `docrerank.pages`
        from docrerank.backends.messages import ImagePart

        return cls(text=page.text, image=ImagePart.from_path(store.image_path(page)), page_id=page.page_id)


PageLike = PageContent | Page | str
