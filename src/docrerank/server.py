"""An HTTP reranking API (``docrerank serve``): one reranker behind the request shape of Cohere's and Jina's.

``POST /v1/rerank`` takes a query and documents (strings, ``{"text"}``, or ``{"image"}`` with optional text)
and answers their relevance scores best first, so existing Cohere/Jina rerank clients can point at a
trained docrerank model. Concurrent requests are scored together: a single worker collects the requests that
arrive within ``max_wait_ms`` (up to ``max_batch_pairs`` pairs), calls ``reranker.score`` once on all their
pairs in a thread, and hands each request its slice. A model forward pass over 8 requests costs little more
than over one, and only one call is ever in the model at a time (a model is not assumed thread-safe).
Every limit is a setting, and a request over one is answered with the limit, the field and its value.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import io
import json
import logging
import math
import re
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from PIL import Image
from pydantic import BaseModel, ConfigDict, Field, field_validator

from docrerank import __version__
from docrerank.backends.messages import ImagePart
from docrerank.errors import import_optional
from docrerank.prompts.requests import PageContent, PageLike
from docrerank.rerankers.base import Reranker

if TYPE_CHECKING:
    from fastapi import FastAPI
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["Rejected", "RerankBatcher", "RerankRequest", "RerankResponse", "ServerSettings", "create_app"]

log = logging.getLogger(__name__)

CHARS_PER_TOKEN = 4  # the usual rough figure for English; `usage.total_tokens` is an estimate, not a count
DOCUMENTS_PER_SEARCH_UNIT = 100  # Cohere bills one search unit per query of up to 100 documents
IMAGE_MIMES = ("image/png", "image/jpeg", "image/webp")  # kept as sent; other formats are re-encoded as PNG
DATA_URL = re.compile(r"data:(?P<mime>[\w.+-]+/[\w.+-]+)?(?P<params>(;[^;,]*)*?)(?P<base64>;base64)?,", re.I)


class ServerSettings(BaseModel):
    """What the server accepts and how it batches; the CLI options of ``docrerank serve``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    model_name: str | None = Field(None, description="the name responses report (default: the reranker kind)")
    max_wait_ms: float = Field(5.0, ge=0, description="how long a batch waits for more requests after its first")
    max_batch_pairs: int = Field(64, ge=1, description="pairs that requests are batched up to (a larger request alone)")
    max_documents: int = Field(1000, ge=1, description="documents per request")
    max_query_chars: int = Field(4000, ge=1, description="characters of the query")
    max_document_chars: int = Field(100_000, ge=1, description="characters of a document's text")
    max_image_bytes: int = Field(20 * 2**20, ge=1, description="bytes of a decoded image")
    max_body_bytes: int = Field(64 * 2**20, ge=1, description="bytes of a request body")
    allow_urls: bool = Field(False, description="fetch http(s) image URLs (lets any client make the server fetch)")
    url_timeout_s: float = Field(10.0, gt=0, description="time allowed to fetch one image URL")


# --- the API's request and response --------------------------------------------------------------------------


class TextDocument(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str


class ImageDocument(BaseModel):
    model_config = ConfigDict(extra="forbid")

    image: str = Field(
        description="an http(s) URL (when the server allows URLs), a data:image/...;base64 URL, or raw base64"
    )
    text: str | None = Field(None, description="the page's text, when known; a text reranker reads only this")


Document = str | TextDocument | ImageDocument


class RerankRequest(BaseModel):
    """The body of ``POST /v1/rerank``, as Cohere's v2 and Jina's rerank APIs take it."""

    model_config = ConfigDict(extra="forbid")

    model: str | None = Field(None, description="accepted for compatibility; the server serves one model")
    query: str = Field(min_length=1, description="what the documents are ranked against")
    documents: list[Document] = Field(min_length=1, description="the documents to rank, in any mix of the forms")
    top_n: int | None = Field(None, ge=1, description="how many results to return (default: all)")
    return_documents: bool = Field(False, description="include each result's document in the response")

    @field_validator("query")
    @classmethod
    def _query_has_text(cls, query: str) -> str:
        if not query.strip():
            raise ValueError("query is blank: give the text to rank the documents against")
        return query


class ResultDocument(BaseModel):
    text: str | None = Field(None, description="the document's text, as sent")
    image: str | None = Field(None, description="an image document's image, as sent")


class RerankResult(BaseModel):
    index: int = Field(description="the document's position in the request")
    relevance_score: float | None = Field(
        description="higher is more relevant, on the reranker's own scale; null when the reranker could not score "
        "the document (it is ranked last)"
    )
    document: ResultDocument | None = Field(None, description="the document, with return_documents only")


class Usage(BaseModel):
    total_tokens: int = Field(
        description=f"an estimate (characters / {CHARS_PER_TOKEN}) of the tokens read: the query once per document "
        "plus each document's text; not the model tokenizer's count"
    )
    search_units: int = Field(description=f"one per {DOCUMENTS_PER_SEARCH_UNIT} documents, as Cohere counts them")


class RerankResponse(BaseModel):
    id: str
    model: str
    results: list[RerankResult] = Field(description="best first (ties in input order), at most top_n")
    usage: Usage


class BatchStats(BaseModel):
    requests: int = Field(0, description="requests scored")
    pairs: int = Field(0, description="(query, document) pairs scored")
    batches: int = Field(0, description="calls of reranker.score")
    failed_batches: int = Field(0, description="calls that raised")


class ErrorDetail(BaseModel):
    detail: str = Field(description="what is wrong: the limit, the field or document index, and the value")


class Health(BaseModel):
    status: str
    model: str
    reranker: str
    uses: list[str]
    version: str
    stats: BatchStats


# --- batching ------------------------------------------------------------------------------------------------


@dataclass
class _Job:
    pairs: list[tuple[str, PageLike]]
    future: asyncio.Future = field(repr=False)


class RerankerFailed(Exception):
    """``reranker.score`` raised on a request's pairs."""


class RerankBatcher:
    """Scores the pairs of concurrent requests together, one ``reranker.score`` call at a time.

    A request larger than ``max_batch_pairs`` is scored alone (the reranker batches inside it). When a call
    on several requests raises, each is scored again alone, so one bad request fails only itself.
    """

    def __init__(self, reranker: Reranker, max_wait_ms: float = 5.0, max_batch_pairs: int = 64):
        self.reranker, self.max_wait, self.max_batch_pairs = reranker, max_wait_ms / 1000, max_batch_pairs
        self.stats = BatchStats()
        self._queue: asyncio.Queue[_Job] | None = None
        self._worker: asyncio.Task | None = None

    async def start(self) -> None:
        self._queue = asyncio.Queue()
        self._worker = asyncio.create_task(self._run(), name="rerank-batcher")

    async def stop(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            try:
                await self._worker
            except asyncio.CancelledError:
                pass

    async def score(self, pairs: list[tuple[str, PageLike]]) -> list[float]:
        """The scores of ``pairs``, in order; ``RerankerFailed`` when the reranker raised on them."""
        if self._queue is None:
            raise RuntimeError("the batcher is not started: `await batcher.start()` in the running loop")
        job = _Job(pairs, asyncio.get_running_loop().create_future())
        await self._queue.put(job)
        return await job.future

    async def _collect(self, first: _Job) -> tuple[list[_Job], _Job | None]:
        """``first`` and the jobs that arrive within ``max_wait`` while they fit; the job that did not fit."""
        assert self._queue is not None
        batch, size = [first], len(first.pairs)
        deadline = asyncio.get_running_loop().time() + self.max_wait
        while size < self.max_batch_pairs:
            left = deadline - asyncio.get_running_loop().time()
            try:
                job = self._queue.get_nowait() if left <= 0 else await asyncio.wait_for(self._queue.get(), left)
            except (asyncio.QueueEmpty, asyncio.TimeoutError):
                break
            if size + len(job.pairs) > self.max_batch_pairs:
                return batch, job
            batch.append(job)
            size += len(job.pairs)
        return batch, None

    async def _run(self) -> None:
        assert self._queue is not None
        carried: _Job | None = None
        while True:
            first, carried = carried or await self._queue.get(), None
            batch, carried = await self._collect(first)
            try:
                await self._score(batch)
            except Exception as exc:  # a bug here must not stop the worker: fail the batch, serve on
                log.exception("the rerank batcher failed on a batch")
                for job in batch:
                    if not job.future.done():
                        job.future.set_exception(RerankerFailed(f"internal error: {exc!r}"))

    async def _call(self, jobs: list[_Job]) -> list[list[float]]:
        """One reranker call for the jobs' pairs, each job a candidate set of its own (``score_sets``)."""
        self.stats.batches += 1
        try:
            scores = await asyncio.to_thread(self.reranker.score_sets, [job.pairs for job in jobs])
        except Exception:
            self.stats.failed_batches += 1
            raise
        sizes = [len(job.pairs) for job in jobs]
        if [len(s) for s in scores] != sizes:
            raise RuntimeError(f"the reranker gave {sum(map(len, scores))} scores for {sum(sizes)} pairs")
        self.stats.pairs += sum(sizes)
        return scores

    async def _score(self, batch: list[_Job]) -> None:
        try:
            scores = await self._call(batch)
        except Exception as exc:
            if len(batch) == 1:
                self._fail(batch[0], exc)
                return
            log.warning("the reranker failed on a batch of %d requests (%r); scoring each alone", len(batch), exc)
            for job in batch:
                try:
                    self._resolve(job, (await self._call([job]))[0])
                except Exception as job_exc:
                    self._fail(job, job_exc)
            return
        for job, job_scores in zip(batch, scores, strict=True):
            self._resolve(job, job_scores)

    def _resolve(self, job: _Job, scores: Sequence[float]) -> None:
        self.stats.requests += 1
        if not job.future.done():  # done: the client went away
            job.future.set_result([float(s) for s in scores])

    def _fail(self, job: _Job, exc: Exception) -> None:
        log.error("the reranker failed on a request of %d pairs", len(job.pairs), exc_info=exc)
        if not job.future.done():
            job.future.set_exception(RerankerFailed(f"{type(exc).__name__}: {exc}"))


# --- documents -----------------------------------------------------------------------------------------------


class Rejected(Exception):
    """A request the server will not score: answered ``status`` with ``{"detail": detail}``."""

    def __init__(self, status: int, detail: str):
        self.status, self.detail = status, detail
        super().__init__(detail)


def _error(status: int, detail: str) -> Rejected:
    return Rejected(status, detail)


def _check_limit(value: int, limit: int, setting: str, what: str, status: int = 413) -> None:
    if value > limit:
        raise _error(status, f"{what} is {value}, over the limit of {limit} ({setting})")


async def _fetch(url: str, where: str, settings: ServerSettings) -> bytes:
    import aiohttp

    timeout = aiohttp.ClientTimeout(total=settings.url_timeout_s)
    try:
        async with aiohttp.ClientSession(timeout=timeout) as session, session.get(url) as response:
            if response.status != 200:
                raise _error(400, f"{where}: fetching {url} answered HTTP {response.status}")
            data = await response.content.read(settings.max_image_bytes + 1)
    except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
        raise _error(400, f"{where}: cannot fetch {url} ({type(exc).__name__}: {exc})") from None
    _check_limit(len(data), settings.max_image_bytes, "max_image_bytes", f"{where}: the image's size in bytes")
    return data


def _base64(value: str, where: str, settings: ServerSettings) -> bytes:
    value = "".join(value.split())
    # 4 base64 characters hold 3 bytes: refuse an oversize image before decoding it
    _check_limit(
        len(value) // 4 * 3, settings.max_image_bytes, "max_image_bytes", f"{where}: the image's size in bytes"
    )
    try:
        return base64.b64decode(value + "=" * (-len(value) % 4), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise _error(400, f"{where} is not valid base64 ({exc}): send the image's bytes base64-encoded") from None


def _image_part(data: bytes, where: str) -> ImagePart:
    """The image, as sent when chat APIs take its format, else re-encoded as PNG; an error if PIL cannot read it."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            mime = Image.MIME.get(image.format or "", "")
            if mime in IMAGE_MIMES:
                return ImagePart(data=data, mime=mime)
            return ImagePart.from_pil(image.convert("RGB"))
    except Exception as exc:  # PIL raises many types for bad input (OSError, SyntaxError, DecompressionBombError)
        raise _error(400, f"{where} is not an image that can be read ({type(exc).__name__}: {exc})") from None


async def _image(value: str, where: str, settings: ServerSettings) -> ImagePart:
    if value.startswith(("http://", "https://")):
        if not settings.allow_urls:
            raise _error(
                400,
                f"{where} is a URL, and this server does not fetch URLs (allow_urls is off; `docrerank serve "
                "--allow-urls` turns it on): send the image as base64 or a data:image/...;base64,... URL",
            )
        data = await _fetch(value, where, settings)
    elif value[:5].lower() == "data:":
        header = DATA_URL.match(value)
        if header is None or not header["base64"]:
            raise _error(400, f"{where} is a data URL that is not base64: use data:image/png;base64,...")
        data = _base64(value[header.end() :], where, settings)
    else:
        data = _base64(value, where, settings)
    _check_limit(len(data), settings.max_image_bytes, "max_image_bytes", f"{where}: the image's size in bytes")
    return await asyncio.to_thread(_image_part, data, where)


async def _page(document: Document, index: int, reranker: Reranker, settings: ServerSettings) -> PageLike:
    """What the reranker reads of one document: its text, or its text and image."""
    where = f"documents[{index}]"
    text = document if isinstance(document, str) else document.text
    if text is not None:
        _check_limit(len(text), settings.max_document_chars, "max_document_chars", f"{where}: the text's length")
    if not isinstance(document, ImageDocument):
        if "text" not in reranker.uses:
            raise _error(
                400,
                f"{where} has no image, and this server's reranker ({reranker.kind}) reads page images: send "
                '{"image": "<base64>"}',
            )
        return text
    if "image" in reranker.uses:
        return PageContent(text=text or "", image=await _image(document.image, where, settings))
    if text is None:
        raise _error(
            400,
            f"{where} is an image without text, and this server's reranker ({reranker.kind}) reads text only: send "
            'the page\'s text ({"text": ...}, or "text" beside "image")',
        )
    return text  # a text reranker reads an image document's text; the image is not read


def _ranked(scores: list[float], top_n: int | None) -> list[tuple[int, float | None]]:
    """(index, score) best first, ties in input order, unscorable (non-finite) last, cut to ``top_n``."""
    clean = [(i, s if math.isfinite(s) else None) for i, s in enumerate(scores)]
    ranked = sorted(clean, key=lambda item: (item[1] is None, -(item[1] or 0.0), item[0]))
    return ranked[:top_n] if top_n is not None else ranked


def _result_document(document: Document) -> ResultDocument:
    if isinstance(document, str):
        return ResultDocument(text=document)
    if isinstance(document, TextDocument):
        return ResultDocument(text=document.text)
    return ResultDocument(text=document.text, image=document.image)


# --- the app -------------------------------------------------------------------------------------------------


class BodySizeLimit:
    """Answers 413 to a request body over ``max_bytes`` (declared or streamed), before anything parses it."""

    def __init__(self, app: ASGIApp, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def _too_large(self, scope: Scope, receive: Receive, send: Send, size: str) -> None:
        detail = f"the request body is {size} bytes, over the limit of {self.max_bytes} (max_body_bytes)"
        body = json.dumps({"detail": detail}).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.max_bytes:
            await self._too_large(scope, receive, send, declared.decode())
            return
        body, more = bytearray(), True
        while more:  # read the whole body (at most max_bytes), then hand it on
            message = await receive()
            if message["type"] != "http.request":
                break
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > self.max_bytes:
                await self._too_large(scope, receive, send, f"over {self.max_bytes}")
                return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": bytes(body), "more_body": False}

        await self.app(scope, replay, send)


def create_app(reranker: Reranker, settings: ServerSettings | None = None) -> FastAPI:
    """The API serving ``reranker``: ``POST /v1/rerank``, ``GET /health``, ``/openapi.json`` and ``/docs``."""
    fastapi = import_optional("fastapi", "serve")
    from fastapi.responses import JSONResponse

    settings = settings or ServerSettings()
    name = settings.model_name or reranker.kind
    batcher = RerankBatcher(reranker, settings.max_wait_ms, settings.max_batch_pairs)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await batcher.start()
        yield
        await batcher.stop()

    app = fastapi.FastAPI(
        title="docrerank",
        version=__version__,
        description=f"Reranking with `{name}` ({reranker.kind}, reads {' and '.join(sorted(reranker.uses))}), in "
        "the request shape of the Cohere v2 and Jina rerank APIs.",
        lifespan=lifespan,
    )
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    app.state.batcher, app.state.settings = batcher, settings

    @app.exception_handler(Rejected)
    async def rejected(_, exc: Rejected):
        return JSONResponse({"detail": exc.detail}, status_code=exc.status)

    error = {"description": "a request over a limit or a document that cannot be read", "model": ErrorDetail}
    responses: dict[int | str, dict[str, Any]] = {
        400: error,
        413: error,
        500: {**error, "description": "the reranker failed"},
    }

    @app.post("/v1/rerank", response_model=RerankResponse, response_model_exclude_unset=True, responses=responses)
    async def rerank(request: RerankRequest) -> RerankResponse:
        """Score each document against the query; the results best first, at most ``top_n``."""
        _check_limit(len(request.documents), settings.max_documents, "max_documents", "the number of documents")
        _check_limit(len(request.query), settings.max_query_chars, "max_query_chars", "the query's length")
        pages = [await _page(doc, i, reranker, settings) for i, doc in enumerate(request.documents)]
        try:
            scores = await batcher.score([(request.query, page) for page in pages])
        except RerankerFailed as exc:
            raise _error(500, f"the reranker failed on this request: {exc}") from None
        results = []
        for index, score in _ranked(scores, request.top_n):
            document = {"document": _result_document(request.documents[index])} if request.return_documents else {}
            results.append(RerankResult(index=index, relevance_score=score, **document))
        characters = sum(len(request.query) + len(getattr(page, "text", page)) for page in pages)
        usage = Usage(
            total_tokens=math.ceil(characters / CHARS_PER_TOKEN),
            search_units=math.ceil(len(pages) / DOCUMENTS_PER_SEARCH_UNIT),
        )
        return RerankResponse(id=str(uuid.uuid4()), model=name, results=results, usage=usage)

    @app.get("/health", response_model=Health)
    async def health() -> Health:
        """Up, what it serves, and how many requests, pairs and reranker calls it has scored."""
        uses = sorted(reranker.uses)
        return Health(
            status="ok", model=name, reranker=reranker.kind, uses=uses, version=__version__, stats=batcher.stats
        )

    return app
