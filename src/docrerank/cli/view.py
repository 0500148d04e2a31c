"""``docrerank view``: a run's data in the browser, page by page, with corrections (``docrerank.viewer``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from docrerank.errors import DocrerankError, import_optional
from docrerank.rerankers.base import is_loopback_host
from docrerank.viewer import RunView, create_app

__all__ = ["view_command"]

stdout = Console()


def view_command(
    run_dir: Annotated[Path, typer.Argument(help="a run directory (docrerank generate --run-dir)")],
    pages: Annotated[
        Path | None, typer.Option("--pages", help="the page store, when it moved from where the run recorded it")
    ] = None,
    mined: Annotated[
        Path | None, typer.Option("--mined", help="a `docrerank mine` folder: its pages and verdicts")
    ] = None,
    host: Annotated[str, typer.Option(help="the address to listen on (loopback: only this machine)")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535)] = 8765,
    read_only: Annotated[bool, typer.Option("--read-only", help="show the data; refuse every correction")] = False,
) -> None:
    """Open a run in the browser: each page's image and text beside its queries, verdicts and rejections;
    filters, search, keyboard navigation, a seeded review sample and the run's stats. Corrections go to
    RUN/corrections.jsonl; `export` and `mix` apply them. A run still being generated opens read-only."""
    if not is_loopback_host(host) and not read_only:
        raise DocrerankError(
            f"--host {host} lets other machines write corrections without any login: add --read-only, "
            "or keep the default 127.0.0.1 (an SSH tunnel reaches it from elsewhere)"
        )
    uvicorn = import_optional("uvicorn", "viewer")
    view = RunView.open(run_dir, pages, mined)
    app = create_app(view, read_only=read_only, hosts=["127.0.0.1", "localhost", host])
    stdout.print(
        f"{len(view.page_ids)} pages of {escape(str(run_dir))}: http://{host}:{port}/"
        + (" (read-only)" if read_only or view.in_progress else ""),
        soft_wrap=True,
    )
    uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_config=None)).run()
