"""``docrerank serve``: a reranker behind an HTTP API in the request shape of Cohere's and Jina's rerank APIs.

The reranker is chosen as for ``docrerank rerank``; the app, its limits and the request batching are in
``docrerank.server``. uvicorn runs it in this process, with the logging this CLI configured (``-v`` shows
uvicorn's messages and the access log).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from docrerank.cli.rerank import (
    DEFAULT_RERANKER,
    BackendOption,
    CascadeTopOption,
    ConfigOption,
    ModelOption,
    RerankerOption,
    make_reranker,
)
from docrerank.errors import import_optional
from docrerank.server import ServerSettings, create_app

__all__ = ["serve_command"]

stdout = Console()


DEFAULT = ServerSettings()


def _url(host: str, port: int) -> str:
    return f"http://{f'[{host}]' if ':' in host else host}:{port}"


def serve_command(
    reranker: RerankerOption = DEFAULT_RERANKER,
    model: ModelOption = None,
    config: ConfigOption = None,
    backend: BackendOption = "verifier",
    cascade_top: CascadeTopOption = 5,
    host: Annotated[
        str,
        typer.Option(
            help="address to listen on: 127.0.0.1 is this machine only; 0.0.0.0 exposes the API, which has no "
            "authentication, to every network the machine is on"
        ),
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="port to listen on")] = 8000,
    name: Annotated[
        str | None, typer.Option(help="the model name responses report (default: --model's name, else --reranker)")
    ] = None,
    max_wait_ms: Annotated[
        float, typer.Option(min=0, help="how long a batch waits for more concurrent requests after its first")
    ] = DEFAULT.max_wait_ms,
    max_batch_pairs: Annotated[
        int,
        typer.Option(min=1, help="(query, document) pairs concurrent requests are batched up to; a larger one alone"),
    ] = DEFAULT.max_batch_pairs,
    max_documents: Annotated[int, typer.Option(min=1, help="limit: documents per request")] = DEFAULT.max_documents,
    max_query_chars: Annotated[
        int, typer.Option(min=1, help="limit: characters of the query")
    ] = DEFAULT.max_query_chars,
    max_document_chars: Annotated[
        int, typer.Option(min=1, help="limit: characters of a document's text")
    ] = DEFAULT.max_document_chars,
    max_image_bytes: Annotated[
        int, typer.Option(min=1, help="limit: bytes of a decoded image")
    ] = DEFAULT.max_image_bytes,
    max_body_bytes: Annotated[int, typer.Option(min=1, help="limit: bytes of a request body")] = DEFAULT.max_body_bytes,
    allow_urls: Annotated[
        bool,
        typer.Option(
            "--allow-urls",
            help="fetch http(s) image URLs that clients send (default: clients send images as base64); lets any "
            "client make the server fetch any URL, those of its own network included",
        ),
    ] = False,
) -> None:
    """Serve a reranker over HTTP: POST /v1/rerank (Cohere v2 / Jina request shape), GET /health, /docs.

    Over a limit, a request is answered 413 with the limit, the field and the value.
    """
    uvicorn = import_optional("uvicorn", "serve")
    if name is None and model is not None:
        name = Path(model).name if reranker in ("saved", "cascade") else model
    settings = ServerSettings(
        model_name=name,
        max_wait_ms=max_wait_ms,
        max_batch_pairs=max_batch_pairs,
        max_documents=max_documents,
        max_query_chars=max_query_chars,
        max_document_chars=max_document_chars,
        max_image_bytes=max_image_bytes,
        max_body_bytes=max_body_bytes,
        allow_urls=allow_urls,
    )
    app = create_app(make_reranker(reranker, model, config, backend, cascade_top), settings)
    url = _url(host, port)
    stdout.print(
        f"serving {settings.model_name or reranker} at {url}/v1/rerank (API docs: {url}/docs); Ctrl+C stops",
        soft_wrap=True,
    )
    if reranker in ("llm", "cascade"):
        stdout.print(
            "[yellow]note:[/yellow] the LLM reranks best of the embedded models but slowly on a CPU (~0.13 pairs/s on "
            "2 cores for pages of up to 4000 characters): give it a GPU or a model server (--config), or serve a "
            "trained student (--reranker saved --model FOLDER)",
            soft_wrap=True,
        )
    if reranker == "cross-encoder" and model is None:
        stdout.print(
            "[yellow]note:[/yellow] the default cross-encoder's scoring head is untrained, so its scores mean nothing "
            "yet: serve a trained one with --reranker saved --model FOLDER (from `docrerank train`)",
            soft_wrap=True,
        )
    uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_config=None)).run()
