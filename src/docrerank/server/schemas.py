"""The API's request and response models, in the shapes of Cohere's (v1 and v2) and Jina's rerank APIs.

Kept apart from the routes so that the OpenAPI schema a client reads is one file, and the scheduler and the
document reader use the same types the routes declare.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = [
    "CHARS_PER_TOKEN",
    "DOCUMENTS_PER_SEARCH_UNIT",
    "ApiVersion",
    "BatchStats",
    "BilledUnits",
    "Document",
    "ErrorDetail",
    "Health",
    "Meta",
    "ModelStatus",
    "ObjectDocument",
    "RerankRequest",
    "RerankResponse",
    "RerankResult",
    "Usage",
]

CHARS_PER_TOKEN = 4  # the usual rough figure for English; `usage.total_tokens` is an estimate, not a count
DOCUMENTS_PER_SEARCH_UNIT = 100  # Cohere bills one search unit per query of up to 100 documents


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
