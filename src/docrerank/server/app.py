"""An HTTP reranking API (``docrerank serve``): one reranker behind the request shape of Cohere's and Jina's.

``POST /v1/rerank`` and ``POST /v2/rerank`` take a query and documents (strings, ``{"text"}``, ``{"image"}``
with optional text, or Cohere's objects of named fields with ``rank_fields``) and answer their relevance
scores best first, with Cohere's ``meta``, so existing Cohere (v1 and v2) and Jina clients can point at a
docrerank model.

Scheduling. One worker owns the model: only one ``reranker.score_sets`` call runs at a time (a model is not
assumed thread-safe, and a call already in the model cannot be stopped). Each request is a job of pairs; a
batch of up to ``max_batch_pairs`` pairs takes a share of every waiting job in turn (round-robin over the
jobs, the rotation moving on each batch), so a 1,000-document request is scored in chunks that take turns
with the other clients' requests, and a small request finishes after a batch or two however large the
others are. Requests arriving within ``max_wait_ms`` of an idle worker are batched together. Pairs accepted
and not yet scored are bounded (``max_queued_pairs``): past it a request is answered 503 with Retry-After.

Unscorable documents. A document whose text is empty (for a text reranker), whose image URL could not be
fetched, or that the reranker scored as non-finite (the zero-shot reranker's -inf for a page its backend
could not judge) is a per-item result: ranked last, with a relevance score below every scored document's,
and named in ``meta.warnings``. A request is refused (400/413/422) only for what the client can fix:
malformed input, a limit, a URL this server does not fetch.

Image URLs (``allow_urls``) are fetched with redirects followed one hop at a time; every hop's host is
resolved by the server and refused unless all its addresses are public (not loopback, private, link-local,
metadata, multicast or reserved) or allowed by the operator (``allow_private_urls``,
``allowed_url_networks``), and the connection goes to the addresses that were checked. Upstream errors are
logged, never echoed to the client. Bodies are read completely, up to ``max_image_bytes``.

Every limit is a setting, and a request over one is answered with the limit, the field and its value.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import collections
import hmac
import io
import ipaddress
import json
import logging
import math
import re
import socket
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from aiohttp.abc import AbstractResolver
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from docrerank import __version__
from docrerank.backends.messages import ImagePart
from docrerank.errors import import_optional
from docrerank.prompts.requests import PageContent, PageLike
from docrerank.rerankers.base import Reranker

if TYPE_CHECKING:
    from fastapi import FastAPI
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = [
    "Busy",
    "Rejected",
    "RerankBatcher",
    "RerankRequest",
    "RerankResponse",
    "ServerSettings",
    "create_app",
    "reranker_warnings",
]

log = logging.getLogger(__name__)

CHARS_PER_TOKEN = 4  # the usual rough figure for English; `usage.total_tokens` is an estimate, not a count
DOCUMENTS_PER_SEARCH_UNIT = 100  # Cohere bills one search unit per query of up to 100 documents
IMAGE_MIMES = ("image/png", "image/jpeg", "image/webp")  # kept as sent; other formats are re-encoded as PNG
DATA_URL = re.compile(r"data:(?P<mime>[\w.+-]+/[\w.+-]+)?(?P<params>(;[^;,]*)*?)(?P<base64>;base64)?,", re.I)
OPEN_PATHS = frozenset({"/health"})  # the routes answered without the API key
REDIRECTS = (301, 302, 303, 307, 308)
NAT64 = ipaddress.ip_network("64:ff9b::/96")  # an IPv4 address behind a NAT64 gateway
URL_FETCHES = 8  # image URLs of one request fetched at once


class ServerSettings(BaseModel):
    """What the server accepts and how it batches; the CLI options of ``docrerank serve``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    model_name: str | None = Field(None, description="the name responses report (default: the reranker kind)")
    max_wait_ms: float = Field(5.0, ge=0, description="how long an idle worker waits for more requests")
    max_batch_pairs: int = Field(64, ge=1, description="pairs of one reranker call, shared among the waiting requests")
    max_queued_pairs: int = Field(
        4000, ge=1, description="pairs accepted and not yet scored (in the model included); past it, 503"
    )
    max_documents: int = Field(1000, ge=1, description="documents per request")
    max_query_chars: int = Field(4000, ge=1, description="characters of the query")
    max_document_chars: int = Field(100_000, ge=1, description="characters of a document's text")
    max_image_bytes: int = Field(20 * 2**20, ge=1, description="bytes of a decoded image")
    max_body_bytes: int = Field(64 * 2**20, ge=1, description="bytes of a request body")
    allow_urls: bool = Field(False, description="fetch http(s) image URLs (lets any client make the server fetch)")
    allow_private_urls: bool = Field(
        False, description="with allow_urls, fetch from loopback, private and link-local addresses too"
    )
    allowed_url_networks: tuple[str, ...] = Field(
        (), description="with allow_urls, networks (CIDR) fetched from even though they are not public"
    )
    url_timeout_s: float = Field(10.0, gt=0, description="time allowed to fetch one image URL, redirects included")
    max_redirects: int = Field(5, ge=0, description="redirects followed when fetching an image URL")
    preload: bool = Field(False, description="load the model at start (one warm-up pair) instead of at first use")
    api_key: SecretStr | None = Field(None, description="the Bearer token every route but /health requires")

    @field_validator("allowed_url_networks")
    @classmethod
    def _networks(cls, networks: tuple[str, ...]) -> tuple[str, ...]:
        for network in networks:
            try:
                ipaddress.ip_network(network, strict=False)
            except ValueError:
                raise ValueError(f"{network!r} is not a network: give one as CIDR, e.g. 10.1.0.0/16") from None
        return networks

    @model_validator(mode="after")
    def _queue_holds_a_request(self) -> ServerSettings:
        if self.max_queued_pairs < self.max_documents:
            raise ValueError(
                f"max_queued_pairs ({self.max_queued_pairs}) is under max_documents ({self.max_documents}): a "
                "request of max_documents documents could never be accepted; raise max_queued_pairs"
            )
        return self


# --- the API's request and response --------------------------------------------------------------------------


class ObjectDocument(BaseModel):
    """A document as an object: ``{"text"}``, ``{"image"}`` (with optional text), or Cohere's named fields."""

    model_config = ConfigDict(extra="allow")

    text: str | None = Field(None, description="the page's text")
    image: str | None = Field(
        None, description="an http(s) URL (when the server allows URLs), a data:image/...;base64 URL, or raw base64"
    )


Document = str | ObjectDocument


class RerankRequest(BaseModel):
    """The body of ``POST /v1/rerank`` and ``/v2/rerank``, as Cohere's (v1 and v2) and Jina's rerank APIs take it.

    Unknown fields are ignored and named in ``meta.warnings``."""

    model_config = ConfigDict(extra="allow")

    model: str | None = Field(None, description="accepted for compatibility and ignored: the server serves one model")
    query: str = Field(min_length=1, description="what the documents are ranked against")
    documents: list[Document] = Field(min_length=1, description="the documents to rank, in any mix of the forms")
    top_n: int | None = Field(None, ge=1, description="how many results to return (default: all)")
    return_documents: bool = Field(False, description="include each result's document, as sent, in the response")
    rank_fields: list[str] | None = Field(
        None,
        min_length=1,
        description="the fields of object documents that are read (Cohere v1), as `field: value` lines when "
        "several; default: text",
    )
    max_tokens_per_doc: int | None = Field(
        None,
        ge=1,
        description=f"Cohere v2: each document's text is cut to this many tokens, estimated as {CHARS_PER_TOKEN} "
        "characters each",
    )
    max_chunks_per_doc: int | None = Field(
        None, ge=1, description="Cohere v1: accepted and ignored (a long page is read as all its chunks)"
    )
    priority: int | None = Field(None, description="Cohere v2: accepted and ignored (every request takes equal turns)")
    relevant_spans: dict[str, Any] | None = Field(
        None, description="Cohere v2: accepted and ignored (no spans are returned)"
    )

    @field_validator("query")
    @classmethod
    def _query_has_text(cls, query: str) -> str:
        if not query.strip():
            raise ValueError("query is blank: give the text to rank the documents against")
        return query


class RerankResult(BaseModel):
    index: int = Field(description="the document's position in the request")
    relevance_score: float = Field(
        description="higher is more relevant, on the reranker's own scale; a document that could not be scored "
        "is ranked last with a score below every scored one's (-1 when the scores are probabilities) and named "
        "in meta.warnings"
    )
    document: dict[str, Any] | None = Field(
        None, description="the document as sent (a string as {text}), with return_documents only"
    )


class Usage(BaseModel):
    total_tokens: int = Field(
        description=f"an estimate (characters / {CHARS_PER_TOKEN}) of the tokens read: the query once per document "
        "plus each document's text; not the model tokenizer's count"
    )
    search_units: int = Field(description=f"one per {DOCUMENTS_PER_SEARCH_UNIT} documents, as Cohere counts them")


class ApiVersion(BaseModel):
    version: str = Field(description="the Cohere API version of the route: 1 or 2")


class BilledUnits(BaseModel):
    search_units: int = Field(description=f"one per {DOCUMENTS_PER_SEARCH_UNIT} documents, as Cohere counts them")


class Meta(BaseModel):
    api_version: ApiVersion
    billed_units: BilledUnits
    warnings: list[str] | None = Field(
        None, description="documents that could not be scored, fields that were ignored; absent when none"
    )


class RerankResponse(BaseModel):
    id: str
    model: str
    results: list[RerankResult] = Field(description="best first (ties in input order), at most top_n")
    usage: Usage
    meta: Meta


class BatchStats(BaseModel):
    requests: int = Field(0, description="requests scored")
    pairs: int = Field(0, description="(query, document) pairs scored")
    batches: int = Field(0, description="calls of reranker.score_sets")
    failed_batches: int = Field(0, description="calls that raised")
    busy: int = Field(0, description="requests answered 503 because the queue was full")
    queued_pairs: int = Field(0, description="pairs accepted and not yet scored, now")
    waiting_requests: int = Field(0, description="requests accepted and not yet answered, now")


class ErrorDetail(BaseModel):
    detail: str = Field(description="what is wrong: the limit, the field or document index, and the value")


ModelStatus = Literal["cold", "loading", "ready", "failed"]


class Health(BaseModel):
    status: ModelStatus = Field(
        description="ready: the model has scored (it is loaded); cold: nothing scored yet, the first request loads "
        "what the reranker loads lazily (--preload loads it at start); loading: the warm-up is running; failed: "
        "the warm-up failed (see the server's log)"
    )
    ready: bool = Field(description="the model is loaded and has scored: requests are answered at full speed")
    model: str
    reranker: str
    uses: list[str]
    version: str
    warnings: list[str] = Field(description="what the operator should know, e.g. a scoring head that was never trained")
    stats: BatchStats


# --- scheduling ----------------------------------------------------------------------------------------------


@dataclass(eq=False)
class _Job:
    """One request's pairs; handed to the model in chunks, its scores filled in as they come."""

    pairs: list[tuple[str, PageLike]]
    future: asyncio.Future = field(repr=False)
    divisible: bool = True  # False: scored in one call (a reranker whose scores depend on the whole set)
    handed: int = 0  # pairs given to batches
    scored: int = 0
    scores: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.scores = [math.nan] * len(self.pairs)

    @property
    def left(self) -> int:
        return len(self.pairs) - self.handed


@dataclass(eq=False)
class _Slice:
    job: _Job
    start: int
    end: int

    @property
    def pairs(self) -> list[tuple[str, PageLike]]:
        return self.job.pairs[self.start : self.end]


class RerankerFailed(Exception):
    """``reranker.score_sets`` raised on a request's pairs."""


class Busy(Exception):
    """The queue is full: answered 503 with ``Retry-After: retry_after`` seconds."""

    def __init__(self, queued: int, limit: int, retry_after: int):
        self.queued, self.limit, self.retry_after = queued, limit, retry_after
        super().__init__(
            f"the server is busy: {queued} pairs are waiting to be scored, and this request's would take them over "
            f"the limit of {limit} (max_queued_pairs); retry after {retry_after} s"
        )


class RerankBatcher:
    """Scores the pairs of concurrent requests, one ``reranker.score_sets`` call at a time, taking turns.

    Each call holds up to ``max_batch_pairs`` pairs: every waiting request gets an equal share in turn (the
    order rotating each call) and what is left of the room goes to the next ones in turn, so one large request
    cannot starve the others. A reranker whose scores depend on the whole candidate set (``pairwise`` false,
    the cascade) has each request scored in one call. When a call on several requests raises, each request's
    part is scored again alone, so one bad request fails only itself. Pairs accepted and not yet scored are
    bounded by ``max_queued_pairs``: past it ``score`` raises ``Busy``.
    """

    def __init__(
        self,
        reranker: Reranker,
        max_wait_ms: float = 5.0,
        max_batch_pairs: int = 64,
        max_queued_pairs: int | None = None,
    ):
        self.reranker, self.max_wait, self.max_batch_pairs = reranker, max_wait_ms / 1000, max_batch_pairs
        self.max_queued_pairs = max_queued_pairs
        self.stats = BatchStats()
        self.status: ModelStatus = "cold"
        self._rotation: collections.deque[_Job] = collections.deque()  # jobs with pairs not yet handed out
        self._live: set[_Job] = set()  # jobs not yet answered
        self._arrived: asyncio.Event | None = None
        self._worker: asyncio.Task | None = None
        self._seconds_per_pair: float | None = None

    async def start(self) -> None:
        self._arrived = asyncio.Event()
        self._worker = asyncio.create_task(self._run(), name="rerank-batcher")

    async def stop(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            try:
                await self._worker
            except asyncio.CancelledError:
                pass

    @property
    def queued_pairs(self) -> int:
        return sum(len(job.pairs) - job.scored for job in self._live)

    def retry_after(self, pairs: int) -> int:
        """Seconds until ``pairs`` more would fit, at the measured speed (5 before anything is measured)."""
        if self._seconds_per_pair is None or self.max_queued_pairs is None:
            return 5
        excess = self.queued_pairs + pairs - self.max_queued_pairs
        return max(1, min(3600, math.ceil(excess * self._seconds_per_pair)))

    async def score(self, pairs: list[tuple[str, PageLike]]) -> list[float]:
        """The scores of ``pairs``, in order; ``RerankerFailed`` when the reranker raised on them, ``Busy`` when
        the queue has no room for them."""
        if self._arrived is None:
            raise RuntimeError("the batcher is not started: `await batcher.start()` in the running loop")
        if not pairs:
            return []
        queued = self.queued_pairs
        if self.max_queued_pairs is not None and queued + len(pairs) > self.max_queued_pairs:
            self.stats.busy += 1
            raise Busy(queued, self.max_queued_pairs, self.retry_after(len(pairs)))
        job = _Job(pairs, asyncio.get_running_loop().create_future(), divisible=self.reranker.pairwise)
        self._live.add(job)
        self._rotation.append(job)
        self._arrived.set()
        try:
            return await job.future
        finally:
            self._drop(job)

    async def warm_up(self, pair: tuple[str, PageLike]) -> None:
        """Score one pair so that the model is loaded (``status``: loading, then ready or failed)."""
        self.status = "loading"
        try:
            await self.score([pair])
        except Exception as exc:
            self.status = "failed"
            log.error("the model failed to load (its warm-up pair raised): %r", exc)

    def _drop(self, job: _Job) -> None:
        self._live.discard(job)
        if job in self._rotation:
            self._rotation.remove(job)

    async def _gather(self) -> None:
        """Wait for work; then, for up to ``max_wait``, for more requests while a batch is not full."""
        assert self._arrived is not None
        while not self._rotation:
            self._arrived.clear()
            await self._arrived.wait()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.max_wait
        while sum(job.left for job in self._rotation) < self.max_batch_pairs:
            left = deadline - loop.time()
            if left <= 0:
                break
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), left)
            except asyncio.TimeoutError:
                break

    def _take(self) -> list[_Slice]:
        """The next batch: each waiting job's share in turn, then the room left to the next in turn. The next
        batch starts with the first job that got nothing in this one (with more jobs than room, each waits for
        its turn, not for the jobs ahead of it to finish), or with the second when all got some."""
        for job in [job for job in self._rotation if job.left == 0 or job.future.done()]:
            self._rotation.remove(job)
        jobs = list(self._rotation)
        room, share = self.max_batch_pairs, math.ceil(self.max_batch_pairs / max(1, len(jobs)))
        slices: dict[_Job, _Slice] = {}
        for fill in (False, True):  # first everyone's share, then the rest of the room in turn
            for job in jobs:
                if room <= 0:
                    break
                if not job.divisible:
                    if fill or (slices and job.left > room):
                        continue
                    size = job.left  # whole, and alone when it is over the room
                else:
                    size = min(job.left, room if fill else share, room)
                if job in slices:
                    slices[job].end += size
                else:
                    slices[job] = _Slice(job, job.handed, job.handed + size)
                job.handed += size
                room -= size
        first_unserved = next((n for n, job in enumerate(jobs) if job not in slices), 0)
        self._rotation.rotate(-(first_unserved or 1))
        for job in [job for job in self._rotation if job.left == 0]:
            self._rotation.remove(job)
        return list(slices.values())

    async def _run(self) -> None:
        while True:
            await self._gather()
            batch = self._take()
            if not batch:
                continue
            try:
                await self._score(batch)
            except Exception as exc:  # a bug here must not stop the worker: fail the batch, serve on
                log.exception("the rerank batcher failed on a batch")
                for part in batch:
                    self._fail(part.job, RerankerFailed(f"internal error: {exc!r}"))

    async def _call(self, batch: list[_Slice]) -> list[list[float]]:
        """One reranker call for the slices' pairs, each slice a candidate set of its own (``score_sets``)."""
        self.stats.batches += 1
        started = time.monotonic()
        try:
            scores = await asyncio.to_thread(self.reranker.score_sets, [part.pairs for part in batch])
        except Exception:
            self.stats.failed_batches += 1
            raise
        sizes = [part.end - part.start for part in batch]
        if [len(s) for s in scores] != sizes:
            raise RuntimeError(f"the reranker gave {sum(map(len, scores))} scores for {sum(sizes)} pairs")
        self.stats.pairs += sum(sizes)
        self.status = "ready"
        per_pair = (time.monotonic() - started) / sum(sizes)
        previous = self._seconds_per_pair
        self._seconds_per_pair = per_pair if previous is None else 0.8 * previous + 0.2 * per_pair
        return scores

    async def _score(self, batch: list[_Slice]) -> None:
        try:
            scores = await self._call(batch)
        except Exception as exc:
            if len(batch) == 1:
                self._fail(batch[0].job, exc)
                return
            log.warning("the reranker failed on a batch of %d requests (%r); scoring each alone", len(batch), exc)
            for part in batch:
                if part.job.future.done():
                    continue
                try:
                    self._fill(part, (await self._call([part]))[0])
                except Exception as part_exc:
                    self._fail(part.job, part_exc)
            return
        for part, part_scores in zip(batch, scores, strict=True):
            self._fill(part, part_scores)

    def _fill(self, part: _Slice, scores: list[float]) -> None:
        job = part.job
        job.scores[part.start : part.end] = [float(s) for s in scores]
        job.scored += part.end - part.start
        if job.scored == len(job.pairs):
            self.stats.requests += 1
            self._live.discard(job)
            if not job.future.done():  # done: the client went away
                job.future.set_result(job.scores)

    def _fail(self, job: _Job, exc: Exception) -> None:
        if job.future.done():
            return
        log.error("the reranker failed on a request of %d pairs", len(job.pairs), exc_info=exc)
        self._drop(job)
        message = str(exc) if isinstance(exc, RerankerFailed) else f"{type(exc).__name__}: {exc}"
        job.future.set_exception(RerankerFailed(message))


# --- documents -----------------------------------------------------------------------------------------------


class Rejected(Exception):
    """A request the server will not score: answered ``status`` with ``{"detail": detail}``."""

    def __init__(self, status: int, detail: str, headers: dict[str, str] | None = None):
        self.status, self.detail, self.headers = status, detail, headers
        super().__init__(detail)


class Unscorable(Exception):
    """A document that cannot be scored: a per-item result, ranked last and named in ``meta.warnings``."""


def _error(status: int, detail: str) -> Rejected:
    return Rejected(status, detail)


def _check_limit(value: int, limit: int, setting: str, what: str, status: int = 413) -> None:
    if value > limit:
        raise _error(status, f"{what} is {value}, over the limit of {limit} ({setting})")


def _address_allowed(address: ipaddress.IPv4Address | ipaddress.IPv6Address, settings: ServerSettings) -> bool:
    """Public, or allowed by the operator: the addresses an image URL may be fetched from."""
    if settings.allow_private_urls:
        return True
    candidates = [address]
    if isinstance(address, ipaddress.IPv6Address):  # an IPv4 address inside an IPv6 one is checked as itself
        embedded = address.ipv4_mapped or address.sixtofour
        if address in NAT64:
            embedded = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if embedded is not None:
            candidates.append(embedded)
    networks = [ipaddress.ip_network(n, strict=False) for n in settings.allowed_url_networks]
    for candidate in candidates:
        if any(candidate.version == n.version and candidate in n for n in networks):
            continue
        if not candidate.is_global or candidate.is_multicast:
            return False
    return True


class _PinnedResolver(AbstractResolver):
    """aiohttp's resolver of a fetch: answers only the addresses the server checked for the hop's host."""

    def __init__(self) -> None:
        self.pinned: dict[str, list[dict[str, Any]]] = {}

    async def resolve(self, host: str, port: int = 0, family: int = socket.AF_INET) -> list[Any]:
        if host not in self.pinned:
            raise OSError(f"{host} was not resolved by the server's address check")
        return [{**entry, "port": port} for entry in self.pinned[host]]

    async def close(self) -> None:
        pass


async def _check_host(url, where: str, resolver: _PinnedResolver, settings: ServerSettings) -> None:
    """Refuse a hop whose host is (or resolves to) an address this server does not fetch from; pin the rest."""
    host = url.raw_host or ""
    refused = _error(
        400,
        f"{where}: the image URL's host {host!r} is, or resolves to, an address this server does not fetch from "
        "(loopback, private, link-local, metadata or otherwise not public); an operator allows them with "
        "`docrerank serve --allow-private-urls` or --allow-url-network CIDR",
    )
    try:
        literal = ipaddress.ip_address(host.strip("[]").split("%")[0])
    except ValueError:
        literal = None
    if literal is not None:
        if not _address_allowed(literal, settings):
            raise refused
        return
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        log.warning("%s: cannot resolve %r: %r", where, host, exc)
        raise Unscorable("its image URL's host could not be resolved") from None
    entries = []
    for family, _, proto, _, sockaddr in infos:
        address = ipaddress.ip_address(str(sockaddr[0]).split("%")[0])
        if not _address_allowed(address, settings):
            log.warning("%s: refused to fetch from %r: it resolves to %s", where, host, address)
            raise refused
        entries.append(
            {
                "hostname": host,
                "host": str(sockaddr[0]),
                "family": family,
                "proto": proto,
                "flags": socket.AI_NUMERICHOST,
            }
        )
    resolver.pinned[host] = entries


async def _read_body(response, where: str, settings: ServerSettings) -> bytes:
    """The whole body, chunk by chunk as it arrives, refused once it is over ``max_image_bytes``."""
    declared = response.content_length
    what = f"{where}: the image's size in bytes"
    if declared is not None:
        _check_limit(declared, settings.max_image_bytes, "max_image_bytes", what)
    data = bytearray()
    async for chunk in response.content.iter_chunked(64 * 1024):
        data += chunk
        _check_limit(len(data), settings.max_image_bytes, "max_image_bytes", what)
    return bytes(data)


async def _fetch_hops(url: str, where: str, settings: ServerSettings) -> bytes:
    import aiohttp
    from yarl import URL

    resolver = _PinnedResolver()
    connector = aiohttp.TCPConnector(resolver=resolver, use_dns_cache=False, force_close=True)
    current = URL(url)
    async with aiohttp.ClientSession(connector=connector, trust_env=False) as session:
        for _ in range(settings.max_redirects + 1):
            if current.scheme not in ("http", "https") or not current.raw_host:
                raise _error(400, f"{where}: the image URL redirects to a URL that is not http(s)")
            await _check_host(current, where, resolver, settings)
            try:
                async with session.get(current, allow_redirects=False) as response:
                    if response.status in REDIRECTS:
                        location = response.headers.get("Location")
                        if not location:
                            raise Unscorable(f"its image URL answered HTTP {response.status} without a Location")
                        current = current.join(URL(location))
                        continue
                    if response.status != 200:
                        raise Unscorable(f"its image URL answered HTTP {response.status}")
                    return await _read_body(response, where, settings)
            except aiohttp.ClientError as exc:
                log.warning("%s: fetching %s failed: %r", where, current, exc)
                raise Unscorable("its image URL could not be fetched (the connection failed)") from None
    raise Unscorable(f"its image URL redirected more than {settings.max_redirects} times (max_redirects)")


async def _fetch(url: str, where: str, settings: ServerSettings) -> bytes:
    try:
        return await asyncio.wait_for(_fetch_hops(url, where, settings), settings.url_timeout_s)
    except asyncio.TimeoutError:
        log.warning("%s: fetching %s took over %s s", where, url, settings.url_timeout_s)
        raise Unscorable(f"fetching its image URL took over {settings.url_timeout_s:g} s (url_timeout_s)") from None


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
        raise _error(400, f"{where} is not an image that can be read ({type(exc).__name__}: {exc})") from None


async def _image(value: str, where: str, settings: ServerSettings) -> ImagePart:
    fetched = value.startswith(("http://", "https://"))
    if fetched:
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
            raise _error(
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
        _check_limit(len(text), settings.max_document_chars, "max_document_chars", f"{where}: the text's length")
    image = None if isinstance(document, str) else document.image
    if image is None:
        if "text" not in reranker.uses:
            raise _error(
                400,
                f"{where} has no image, and this server's reranker ({reranker.kind}) reads page images: send "
                '{"image": "<base64>"}',
            )
    elif "image" in reranker.uses:
        return PageContent(text=text or "", image=await _image(image, where, settings))
    elif text is None:
        raise _error(
            400,
            f"{where} is an image without text, and this server's reranker ({reranker.kind}) reads text only: send "
            'the page\'s text ({"text": ...}, or "text" beside "image")',
        )
    # a text reranker reads the text; an image document's image is not read
    if not (text or "").strip():
        raise Unscorable("its text is empty")
    return text or ""


async def _pages(request: RerankRequest, reranker: Reranker, settings: ServerSettings) -> list[PageLike | Unscorable]:
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


def _ranked(scores: list[float | None], top_n: int | None) -> tuple[list[tuple[int, float]], float | None]:
    """(index, score) best first, ties in input order, unscorable (None or non-finite) last with the floor
    score (below every other: -1 when the scores are probabilities), cut to ``top_n``; the floor."""
    clean = [(i, s if s is not None and math.isfinite(s) else None) for i, s in enumerate(scores)]
    finite = [s for _, s in clean if s is not None]
    floor = min([0.0, *finite]) - 1.0
    ranked = sorted(clean, key=lambda item: (item[1] is None, -(item[1] or 0.0), item[0]))
    cut = ranked[:top_n] if top_n is not None else ranked
    unscored = len(finite) < len(clean)
    return [(i, floor if s is None else s) for i, s in cut], floor if unscored else None


def _result_document(document: Document) -> dict[str, Any]:
    if isinstance(document, str):
        return {"text": document}
    return document.model_dump(exclude_unset=True)


def reranker_warnings(reranker: Reranker) -> list[str]:
    """What an operator should know about a reranker before serving it: a cross-encoder whose scoring head was
    never trained (a base encoder's checkpoint, not a sequence classifier's) scores every page near 0.5."""
    model = getattr(reranker, "model", None)
    if reranker.kind != "cross-encoder" or model is None:
        student = getattr(reranker, "student", None)  # the cascade's first stage
        return reranker_warnings(student) if isinstance(student, Reranker) else []
    config = getattr(model, "config", None)
    architectures = getattr(config, "architectures", None) or []
    if any(name.endswith("ForSequenceClassification") for name in architectures):
        return []
    return [
        "the cross-encoder's scoring head was never trained: its scores are near 0.5 for every document and rank "
        "nothing; serve a trained one (`docrerank train`, then --reranker saved --model FOLDER)"
    ]


def _warm_up_pair(reranker: Reranker) -> tuple[str, PageLike]:
    text = "docrerank warm-up: a short page of text, scored once so that the model is loaded before requests."
    if "image" in reranker.uses:
        buffer = io.BytesIO()
        Image.new("RGB", (64, 64), "white").save(buffer, format="PNG")
        return "warm-up", PageContent(text=text, image=ImagePart(data=buffer.getvalue(), mime="image/png"))
    return "warm-up", text


# --- the app -------------------------------------------------------------------------------------------------


async def _send_json(send: Send, status: int, detail: str, headers: list[tuple[bytes, bytes]] = ()) -> None:
    body = json.dumps({"detail": detail}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *headers]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class BodySizeLimit:
    """Answers 413 to a request body over ``max_bytes`` (declared or streamed), before anything parses it."""

    def __init__(self, app: ASGIApp, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def _too_large(self, send: Send, size: str) -> None:
        await _send_json(
            send, 413, f"the request body is {size} bytes, over the limit of {self.max_bytes} (max_body_bytes)"
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.max_bytes:
            await self._too_large(send, declared.decode())
            return
        body, more = bytearray(), True
        while more:  # read the whole body (at most max_bytes), then hand it on
            message = await receive()
            if message["type"] != "http.request":
                break
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > self.max_bytes:
                await self._too_large(send, f"over {self.max_bytes}")
                return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": bytes(body), "more_body": False}

        await self.app(scope, replay, send)


class ApiKeyAuth:
    """Answers 401 to a request without ``Authorization: Bearer <key>``, on every route but ``OPEN_PATHS``."""

    def __init__(self, app: ASGIApp, key: str):
        self.app, self.key = app, key.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        scheme, _, token = dict(scope["headers"]).get(b"authorization", b"").partition(b" ")
        if scheme.lower() == b"bearer" and hmac.compare_digest(token.strip(), self.key):
            await self.app(scope, receive, send)
            return
        detail = "this server needs an API key: send `Authorization: Bearer <key>` (the key its operator set)"
        await _send_json(send, 401, detail, [(b"www-authenticate", b"Bearer")])


def create_app(
    reranker: Reranker, settings: ServerSettings | None = None, warnings: list[str] | None = None
) -> FastAPI:
    """The API serving ``reranker``: ``POST /v1/rerank`` and ``/v2/rerank``, ``GET /health``, ``/openapi.json`` and
    ``/docs``. ``warnings``: what ``/health`` tells besides ``reranker_warnings`` (both in ``app.state.warnings``)."""
    fastapi = import_optional("fastapi", "serve")
    from fastapi.responses import JSONResponse

    settings = settings or ServerSettings()
    name = settings.model_name or reranker.kind
    batcher = RerankBatcher(reranker, settings.max_wait_ms, settings.max_batch_pairs, settings.max_queued_pairs)
    operator_notes = [*reranker_warnings(reranker), *(warnings or [])]  # /health tells them, the CLI prints them

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await batcher.start()
        warm_up = asyncio.create_task(batcher.warm_up(_warm_up_pair(reranker))) if settings.preload else None
        yield
        if warm_up is not None:
            warm_up.cancel()
        await batcher.stop()

    app = fastapi.FastAPI(
        title="docrerank",
        version=__version__,
        description=f"Reranking with `{name}` ({reranker.kind}, reads {' and '.join(sorted(reranker.uses))}), in "
        "the request shape of the Cohere (v1 and v2) and Jina rerank APIs.",
        lifespan=lifespan,
    )
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    if settings.api_key is not None:
        app.add_middleware(ApiKeyAuth, key=settings.api_key.get_secret_value())  # outermost: before the body
    app.state.batcher, app.state.settings, app.state.warnings = batcher, settings, operator_notes

    @app.exception_handler(Rejected)
    async def rejected(_, exc: Rejected):
        return JSONResponse({"detail": exc.detail}, status_code=exc.status, headers=exc.headers)

    error = {"description": "a request over a limit or a document that cannot be read", "model": ErrorDetail}
    responses: dict[int | str, dict[str, Any]] = {
        400: error,
        401: {**error, "description": "the API key is missing or wrong (servers started with one)"},
        413: error,
        500: {**error, "description": "the reranker failed"},
        503: {**error, "description": "the queue is full: retry after the Retry-After header's seconds"},
    }

    async def answer(request: RerankRequest, version: str) -> RerankResponse:
        _check_limit(len(request.documents), settings.max_documents, "max_documents", "the number of documents")
        _check_limit(len(request.query), settings.max_query_chars, "max_query_chars", "the query's length")
        pages = await _pages(request, reranker, settings)
        scorable = [i for i, page in enumerate(pages) if not isinstance(page, Unscorable)]
        try:
            scored = await batcher.score([(request.query, pages[i]) for i in scorable])
        except Busy as exc:
            raise Rejected(503, str(exc), {"Retry-After": str(exc.retry_after)}) from None
        except RerankerFailed as exc:
            raise _error(500, f"the reranker failed on this request: {exc}") from None
        scores: list[float | None] = [None] * len(pages)
        for i, score in zip(scorable, scored, strict=True):
            scores[i] = score
        ranked, floor = _ranked(scores, request.top_n)
        notes = [f"ignored the unknown field {key!r}" for key in sorted(request.model_extra or {})]
        if request.max_chunks_per_doc is not None:
            notes.append("ignored max_chunks_per_doc: a long page is read as all its chunks")
        if request.priority is not None:
            notes.append("ignored priority: every request takes equal turns")
        if request.relevant_spans is not None and request.relevant_spans.get("mode") != "disabled":
            notes.append("ignored relevant_spans: this server returns no spans")
        for i, (page, score) in enumerate(zip(pages, scores, strict=True)):
            if isinstance(page, Unscorable) or score is None or not math.isfinite(score):
                reason = page if isinstance(page, Unscorable) else "the reranker could not score it"
                notes.append(f"documents[{i}] was not scored ({reason}): ranked last, relevance_score {floor:g}")
        results = []
        for index, score in ranked:
            document = {"document": _result_document(request.documents[index])} if request.return_documents else {}
            results.append(RerankResult(index=index, relevance_score=score, **document))
        characters = sum(
            len(request.query) + len(getattr(page, "text", page)) for page in pages if not isinstance(page, Unscorable)
        )
        units = math.ceil(len(pages) / DOCUMENTS_PER_SEARCH_UNIT)
        meta = Meta(api_version=ApiVersion(version=version), billed_units=BilledUnits(search_units=units))
        if notes:
            meta.warnings = notes
        usage = Usage(total_tokens=math.ceil(characters / CHARS_PER_TOKEN), search_units=units)
        return RerankResponse(id=str(uuid.uuid4()), model=name, results=results, usage=usage, meta=meta)

    route = {"response_model": RerankResponse, "response_model_exclude_none": True, "responses": responses}

    @app.post("/v1/rerank", **route)
    async def rerank_v1(request: RerankRequest) -> RerankResponse:
        """Score each document against the query; the results best first, at most ``top_n`` (Cohere v1, Jina)."""
        return await answer(request, "1")

    @app.post("/v2/rerank", **route)
    async def rerank_v2(request: RerankRequest) -> RerankResponse:
        """The same as ``/v1/rerank``, answered as Cohere's v2 (``meta.api_version`` 2)."""
        return await answer(request, "2")

    @app.get("/health", response_model=Health, responses={503: {"description": "loading, or the warm-up failed"}})
    async def health():
        """Whether the model is loaded and ready, what it serves, what the operator should know, and counts."""
        stats = batcher.stats.model_copy(
            update={"queued_pairs": batcher.queued_pairs, "waiting_requests": len(batcher._live)}
        )
        body = Health(
            status=batcher.status,
            ready=batcher.status == "ready",
            model=name,
            reranker=reranker.kind,
            uses=sorted(reranker.uses),
            version=__version__,
            warnings=operator_notes,
            stats=stats,
        )
        return JSONResponse(
            body.model_dump(mode="json"), status_code=503 if batcher.status in ("loading", "failed") else 200
        )

    return app
