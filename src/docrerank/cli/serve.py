"""``docrerank serve``: a reranker behind an HTTP API in the request shape of Cohere's and Jina's rerank APIs.

The reranker is chosen as for ``docrerank rerank``; the app, its limits and the request batching are in
``docrerank.server``. uvicorn runs it in this process, with the logging this CLI configured (``-v`` shows
uvicorn's messages and the access log).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from docrerank.cli.rerank import (
    DEFAULT_RERANKER,
    NO_RERANKER,
    RERANKER_CHOICES,
    BackendOption,
    CascadeTopOption,
    ConfigOption,
    ModelOption,
    PageViewOption,
    RerankerOption,
    RuntimeOption,
    TrustRerankerOption,
    make_reranker,
    say_default_chain,
)
from docrerank.errors import DocrerankError, import_optional
from docrerank.rerankers import default_chain
from docrerank.rerankers.base import is_loopback_host
from docrerank.server import ServerSettings, create_app

__all__ = ["serve_command"]

stdout = Console()
stderr = Console(stderr=True)


DEFAULT = ServerSettings()


def _url(host: str, port: int) -> str:
    return f"http://{f'[{host}]' if ':' in host else host}:{port}"


def _server_warnings(host: str, key: str | None) -> list[str]:
    """What the operator must hear at start and /health tells: an API bound beyond loopback without a key."""
    if key is None and not is_loopback_host(host):
        return [
            f"the API is bound to {host}, beyond this machine, without an API key: anyone who can reach it can use "
            "it; set one with --api-key-env VARIABLE"
        ]
    return []


def _api_key(variable: str | None) -> str | None:
    """The API key from the environment variable ``variable`` (never printed); an error when it is unset."""
    if variable is None:
        return None
    key = os.environ.get(variable, "").strip()
    if not key:
        raise DocrerankError(
            f"--api-key-env {variable}: the environment variable {variable} is not set or empty; set it to the key "
            f"clients must send (e.g. export {variable}=$(openssl rand -hex 32)), or leave out --api-key-env"
        )
    return key


def serve_command(
    reranker: RerankerOption = DEFAULT_RERANKER,
    model: ModelOption = None,
    config: ConfigOption = None,
    backend: BackendOption = "verifier",
    cascade_top: CascadeTopOption = default_chain.TOP,
    trust_reranker: TrustRerankerOption = False,
    page_view: PageViewOption = None,
    runtime: RuntimeOption = "torch",
    host: Annotated[
        str,
        typer.Option(
            help="address to listen on: 127.0.0.1 is this machine only; 0.0.0.0 exposes the API to every network "
            "the machine is on (give it an API key: --api-key-env)"
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
    max_queued_pairs: Annotated[
        int,
        typer.Option(
            min=1, help="limit: pairs accepted and not yet scored; past it a request is answered 503 with Retry-After"
        ),
    ] = DEFAULT.max_queued_pairs,
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
            help="fetch http(s) image URLs that clients send (default: clients send images as base64); only from "
            "public addresses, checked on every redirect, unless --allow-private-urls / --allow-url-network",
        ),
    ] = False,
    allow_private_urls: Annotated[
        bool,
        typer.Option(
            "--allow-private-urls",
            help="with --allow-urls, fetch from loopback, private, link-local and metadata addresses too: lets "
            "any client make the server fetch from its own network",
        ),
    ] = False,
    allow_url_network: Annotated[
        list[str] | None,
        typer.Option(
            "--allow-url-network",
            metavar="CIDR",
            help="with --allow-urls, a network fetched from although not public (e.g. 10.1.2.0/24); repeatable",
        ),
    ] = None,
    preload: Annotated[
        bool,
        typer.Option(
            "--preload",
            help="load the model at start (one warm-up pair); /health answers 503 'loading' until it is ready",
        ),
    ] = False,
    api_key_env: Annotated[
        str | None,
        typer.Option(
            metavar="VARIABLE",
            help="require `Authorization: Bearer KEY` on every route but /health, KEY read from this environment "
            "variable (e.g. DOCRERANK_API_KEY)",
        ),
    ] = None,
) -> None:
    """Serve a reranker over HTTP: POST /v1/rerank and /v2/rerank (Cohere v1 / v2, Jina), GET /health, /docs.

    Over a limit, a request is answered 413 with the limit, the field and the value; with the queue full, 503
    with Retry-After.
    """
    if reranker == NO_RERANKER:
        raise DocrerankError(
            f"serve needs a reranker: leave out --reranker for the default chain, or choose one: {RERANKER_CHOICES}"
        )
    uvicorn = import_optional("uvicorn", "serve")
    key = _api_key(api_key_env)
    if name is None and model is not None:
        name = Path(model).name if reranker in ("saved", "cascade") else model
    if name is None and reranker == "cascade":
        name = f"cascade-{default_chain.STUDENT.name}"
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
        allow_private_urls=allow_private_urls,
        allowed_url_networks=tuple(allow_url_network or ()),
        # the default queue grows with --max-documents: a request of max_documents must fit
        max_queued_pairs=max_queued_pairs
        if max_queued_pairs != DEFAULT.max_queued_pairs
        else max(max_queued_pairs, max_documents),
        preload=preload,
        api_key=key,
    )
    warnings = _server_warnings(host, key)
    app = create_app(
        make_reranker(
            reranker, model, config, backend, cascade_top, trust=trust_reranker, page_view=page_view, runtime=runtime
        ),
        settings,
        warnings,
    )
    url = _url(host, port)
    stdout.print(
        f"serving {settings.model_name or reranker} at {url}/v1/rerank and /v2/rerank (API docs: {url}/docs; "
        f"{'warming the model up now' if preload else 'the first request warms the model up'}: {url}/health tells "
        "when it is ready"
        f"{'; API key required' if key else ''}); Ctrl+C stops",
        soft_wrap=True,
    )
    say_default_chain(reranker, model, stdout, cascade_top=cascade_top, page_view=page_view)
    for warning in app.state.warnings:
        stderr.print(f"[bold red]WARNING:[/bold red] {escape(warning)}", soft_wrap=True)
    if reranker in ("llm", "cascade"):
        stdout.print(
            "[yellow]note:[/yellow] the LLM is slow on a CPU (on 2 cores ~0.13 pairs/s reading whole pages, ~0.25 the "
            "focused view; the default chain ~0.57, ~20 s for 10 documents): give it a GPU or a model server "
            "(--config), or serve the student alone (--reranker saved --model FOLDER: the shipped fusion "
            f"{default_chain.STUDENT}, ~1.9 pairs/s)",
            soft_wrap=True,
        )
    uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_config=None)).run()
