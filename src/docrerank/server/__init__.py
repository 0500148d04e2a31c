"""The HTTP reranking API of ``docrerank serve`` (being split into one module per concept)."""

from docrerank.server.app import (
    Busy,
    Rejected,
    RerankBatcher,
    RerankRequest,
    RerankResponse,
    ServerSettings,
    create_app,
    reranker_warnings,
)

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
