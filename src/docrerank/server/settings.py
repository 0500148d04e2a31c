"""ServerSettings: every limit and switch of the server in one frozen model, so the CLI, the app and the tests
share one set of defaults and a bad combination is refused before the server starts."""

from __future__ import annotations

import ipaddress

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

__all__ = ["ServerSettings"]


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
