"""An HTTP reranking API (``docrerank serve``): one reranker behind the request shape of Cohere's and Jina's.

``POST /v1/rerank`` and ``POST /v2/rerank`` take a query and documents (strings, ``{"text"}``, ``{"image"}``
with optional text, or Cohere's objects of named fields with ``rank_fields``) and answer their relevance
scores best first, with Cohere's ``meta``, so existing Cohere (v1 and v2) and Jina clients can point at a
docrerank model. Every limit is a setting, and a request over one is answered with the limit, the field and
its value.

One concept per module:

- ``app``: the FastAPI app and its routes (``create_app``); a request's answer assembled
- ``settings``: ``ServerSettings``, every limit and switch
- ``schemas``: the request and response models (Cohere v1/v2, Jina), ``/health``'s body
- ``scheduler``: ``RerankBatcher``, fair turns of the waiting requests on one model worker, bounded queue
- ``documents``: a request's documents read as pages (text, rank_fields, images)
- ``image_urls``: image URLs fetched hop by hop from checked public addresses only
- ``errors``: ``Rejected`` (the whole request) and ``Unscorable`` (one document)
- ``middleware``: the API key and the body size limit, answered before anything parses the body
- ``health``: readiness: the reranker's warnings, the ``--preload`` warm-up pair
"""

from docrerank.server.app import create_app
from docrerank.server.errors import Rejected
from docrerank.server.health import reranker_warnings
from docrerank.server.scheduler import Busy, RerankBatcher
from docrerank.server.schemas import RerankRequest, RerankResponse
from docrerank.server.settings import ServerSettings

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
