"""The FastAPI app: the routes ``/v1/rerank``, ``/v2/rerank`` and ``/health``, wired to the scheduler, the
document reader and the guards. A request's answer (ranking, ``meta.warnings``, usage) is assembled here;
everything it delegates lives in its own module of this package."""

from __future__ import annotations

import asyncio
import math
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from docrerank import __version__
from docrerank.errors import import_optional
from docrerank.rerankers.base import Reranker
from docrerank.server.documents import read_pages
from docrerank.server.errors import Rejected, Unscorable, check_limit
from docrerank.server.health import reranker_warnings, warm_up_pair
from docrerank.server.middleware import ApiKeyAuth, BodySizeLimit
from docrerank.server.scheduler import Busy, RerankBatcher, RerankerFailed
from docrerank.server.schemas import (
    CHARS_PER_TOKEN,
    DOCUMENTS_PER_SEARCH_UNIT,
    ApiVersion,
    BilledUnits,
    Document,
    ErrorDetail,
    Health,
    Meta,
    RerankRequest,
    RerankResponse,
    RerankResult,
    Usage,
)
from docrerank.server.settings import ServerSettings

if TYPE_CHECKING:
    from fastapi import FastAPI

__all__ = ["create_app"]


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
        warm_up = asyncio.create_task(batcher.warm_up(warm_up_pair(reranker))) if settings.preload else None
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
        check_limit(len(request.documents), settings.max_documents, "max_documents", "the number of documents")
        check_limit(len(request.query), settings.max_query_chars, "max_query_chars", "the query's length")
        pages = await read_pages(request, reranker, settings)
        scorable = [i for i, page in enumerate(pages) if not isinstance(page, Unscorable)]
        try:
            scored = await batcher.score([(request.query, pages[i]) for i in scorable])
        except Busy as exc:
            raise Rejected(503, str(exc), {"Retry-After": str(exc.retry_after)}) from None
        except RerankerFailed as exc:
            raise Rejected(500, f"the reranker failed on this request: {exc}") from None
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
            update={"queued_pairs": batcher.queued_pairs, "waiting_requests": batcher.waiting_requests}
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
