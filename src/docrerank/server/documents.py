"""A request's documents read as the pages a reranker scores: strings, ``{"text"}``, Cohere's named fields
(``rank_fields``), images as base64, data URLs or (``allow_urls``) fetched URLs.

A document that cannot be scored (empty text for a text reranker, an image URL that could not be fetched or is
not an image) is a per-item result, ``Unscorable``; a request is ``Rejected`` only for what the client can fix.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import io
import json
import logging
import re
from typing import Any

from PIL import Image

from docrerank.backends.messages import ImagePart
from docrerank.pages.content import PageContent, PageLike
from docrerank.rerankers.base import Reranker
from docrerank.server.errors import Rejected, Unscorable, check_image_size, check_limit
from docrerank.server.image_urls import fetch_image
from docrerank.server.schemas import CHARS_PER_TOKEN, Document, RerankRequest
from docrerank.server.settings import ServerSettings

__all__ = ["read_pages"]

log = logging.getLogger(__name__)

IMAGE_MIMES = ("image/png", "image/jpeg", "image/webp")  # kept as sent; other formats are re-encoded as PNG
DATA_URL = re.compile(r"data:(?P<mime>[\w.+-]+/[\w.+-]+)?(?P<params>(;[^;,]*)*?)(?P<base64>;base64)?,", re.I)
URL_FETCHES = 8  # image URLs of one request fetched at once


def _base64(value: str, where: str, settings: ServerSettings) -> bytes:
    value = "".join(value.split())
    # 4 base64 characters hold 3 bytes: refuse an oversize image before decoding it
    check_image_size(len(value) // 4 * 3, where, settings)
    try:
        return base64.b64decode(value + "=" * (-len(value) % 4), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise Rejected(400, f"{where} is not valid base64 ({exc}): send the image's bytes base64-encoded") from None


def _image_part(data: bytes, where: str, fetched: bool) -> ImagePart:
    """The image, as sent when chat APIs take its format, else re-encoded as PNG; an error if PIL cannot read it."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            mime = Image.MIME.get(image.format or "", "")
            if mime in IMAGE_MIMES:
                return ImagePart(data=data, mime=mime)
            return ImagePart.from_pil(image.convert("RGB"))
    except Exception as exc:  # PIL raises many types for bad input (OSError, SyntaxError, DecompressionBombError)
        if fetched:  # what a URL answered is the upstream's doing: a per-item result, its detail logged only
            log.warning("%s: the image URL's content is not an image: %r", where, exc)
            raise Unscorable("its image URL's content is not an image that can be read") from None
        raise Rejected(400, f"{where} is not an image that can be read ({type(exc).__name__}: {exc})") from None


async def _image(value: str, where: str, settings: ServerSettings) -> ImagePart:
    fetched = value.startswith(("http://", "https://"))
    if fetched:
        if not settings.allow_urls:
            raise Rejected(
                400,
                f"{where} is a URL, and this server does not fetch URLs (allow_urls is off; `docrerank serve "
                "--allow-urls` turns it on): send the image as base64 or a data:image/...;base64,... URL",
            )
        data = await fetch_image(value, where, settings)
    elif value[:5].lower() == "data:":
        header = DATA_URL.match(value)
        if header is None or not header["base64"]:
            raise Rejected(400, f"{where} is a data URL that is not base64: use data:image/png;base64,...")
        data = _base64(value[header.end() :], where, settings)
    else:
        data = _base64(value, where, settings)
    check_image_size(len(data), where, settings)
    return await asyncio.to_thread(_image_part, data, where, fetched)


def _field_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _document_text(document: Document, index: int, request: RerankRequest) -> str | None:
    """The text a reranker reads of a document: the string, its ``text``, or its ``rank_fields``."""
    if isinstance(document, str):
        return document
    if request.rank_fields is None:
        if document.text is None and document.image is None:
            fields = ", ".join(sorted(document.model_dump(exclude_none=True))) or "none"
            raise Rejected(
                400,
                f'documents[{index}] has neither text nor image (its fields: {fields}): send {{"text": ...}}, or '
                "name the fields to read in rank_fields",
            )
        return document.text
    values = document.model_dump(exclude_none=True)
    present = [name for name in request.rank_fields if name in values]
    if len(request.rank_fields) == 1:
        return _field_text(values[present[0]]) if present else ""
    return "\n".join(f"{name}: {_field_text(values[name])}" for name in present)


async def _page(
    document: Document, index: int, request: RerankRequest, reranker: Reranker, settings: ServerSettings
) -> PageLike:
    """What the reranker reads of one document: its text, or its text and image; ``Unscorable`` when nothing."""
    where = f"documents[{index}]"
    text = _document_text(document, index, request)
    if text is not None and request.max_tokens_per_doc is not None:
        text = text[: request.max_tokens_per_doc * CHARS_PER_TOKEN]
    if text is not None:
        check_limit(len(text), settings.max_document_chars, "max_document_chars", f"{where}: the text's length")
    image = None if isinstance(document, str) else document.image
    if image is None:
        if "text" not in reranker.uses:
            raise Rejected(
                400,
                f"{where} has no image, and this server's reranker ({reranker.kind}) reads page images: send "
                '{"image": "<base64>"}',
            )
    elif "image" in reranker.uses:
        return PageContent(text=text or "", image=await _image(image, where, settings))
    elif text is None:
        raise Rejected(
            400,
            f"{where} is an image without text, and this server's reranker ({reranker.kind}) reads text only: send "
            'the page\'s text ({"text": ...}, or "text" beside "image")',
        )
    # a text reranker reads the text; an image document's image is not read
    if not (text or "").strip():
        raise Unscorable("its text is empty")
    return text or ""


async def read_pages(
    request: RerankRequest, reranker: Reranker, settings: ServerSettings
) -> list[PageLike | Unscorable]:
    """Every document's page, or why it cannot be scored; the first refused document (by index) refuses all."""
    gate = asyncio.Semaphore(URL_FETCHES)

    async def one(index: int, document: Document) -> PageLike | Unscorable:
        async with gate:
            try:
                return await _page(document, index, request, reranker, settings)
            except Unscorable as exc:
                return exc

    results = await asyncio.gather(*(one(i, doc) for i, doc in enumerate(request.documents)), return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException) and not isinstance(result, Unscorable):
            raise result
    return results  # type: ignore[return-value]
