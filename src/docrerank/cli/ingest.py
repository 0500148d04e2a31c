"""``docrerank ingest``: documents in, a page store out."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from docrerank.cli.options import AddressOption, ExecutorKind, ExecutorOption, ray_only
from docrerank.cli.progress import counting_bar
from docrerank.pages import IngestReport, IngestSettings, OcrMode, ingest

__all__ = ["ingest_command", "print_report"]

stdout = Console()


def print_report(report: IngestReport) -> None:
    """The summary of an ingest: pages, where their text came from, and one line per error."""
    summary = Table(title=f"page store {escape(str(report.store))}", show_header=False, title_justify="left")
    summary.add_column(style="bold")
    summary.add_column(justify="right")
    rate = report.pages_new / report.elapsed_s if report.elapsed_s else 0.0
    summary.add_row("documents in this run", str(report.documents))
    summary.add_row("pages ingested now", f"{report.pages_new}  ({rate:.1f} pages/s)")
    summary.add_row("pages already done (skipped)", str(report.pages_skipped))
    summary.add_row("pages in store", str(report.pages_in_store))
    summary.add_row("  text from PDF text layer", str(report.by_text_source.get("text_layer", 0)))
    summary.add_row("  text from OCR", str(report.by_text_source.get("ocr", 0)))
    summary.add_row("  no text", str(report.by_text_source.get("none", 0)))
    summary.add_row("identical pages stored once", str(report.duplicates))
    summary.add_row("errors", f"[red]{len(report.errors)}[/red]" if report.errors else "0")
    summary.add_row("wall time", f"{report.elapsed_s:.1f} s")
    stdout.print(summary)
    if report.errors:
        errors = Table(title=f"errors (also in {escape(str(report.store / 'errors.jsonl'))})", title_justify="left")
        errors.add_column("file", overflow="fold")
        errors.add_column("reason", overflow="fold")
        errors.add_column("what to do", overflow="fold")
        for error in report.errors:
            errors.add_row(escape(error.item), escape(error.reason), escape(error.fix))
        stdout.print(errors)


def ingest_command(
    inputs: Annotated[
        list[Path],
        # readable=False: an unreadable file is that input's error (errors.jsonl), not a usage error for all
        typer.Argument(help="PDF files, page images (PNG/JPEG/TIFF/WebP), folders", readable=False),
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="the page store folder (created or added to)")],
    dpi: Annotated[int, typer.Option(help="PDF render resolution")] = 150,
    max_side: Annotated[int, typer.Option(help="cap on the longest image side, in pixels")] = 2048,
    ocr: Annotated[OcrMode, typer.Option(help="OCR pages: never, auto (thin text layer), always")] = OcrMode.AUTO,
    min_text_chars: Annotated[int, typer.Option(help="auto: OCR text layers with fewer characters")] = 40,
    ocr_lang: Annotated[str, typer.Option(help="Tesseract language(s), e.g. eng or eng+deu")] = "eng",
    ocr_timeout: Annotated[float, typer.Option(help="seconds of OCR per page before it is an error")] = 120.0,
    max_image_pixels: Annotated[int, typer.Option(help="refuse larger images (decompression bombs)")] = 89_478_485,
    password: Annotated[
        str | None, typer.Option(help="password for encrypted PDFs", envvar="DOCRERANK_PDF_PASSWORD")
    ] = None,
    workers: Annotated[int | None, typer.Option(help="worker processes (default: all cores)")] = None,
    progress: Annotated[bool, typer.Option(help="show a progress bar")] = True,
    executor: ExecutorOption = ExecutorKind.LOCAL,
    address: AddressOption = None,
) -> None:
    """Render PDF pages and page images into a page store, with their text (PDF text layer or OCR).

    Re-running skips pages already done; an interrupted run resumes. Exit code 1 when any input failed
    (the others are ingested; the reasons are in STORE/errors.jsonl). --executor ray renders the units as Ray
    tasks (the inputs and the store on paths every node reaches).
    """
    ray_only(executor, address=address)
    settings = IngestSettings(
        dpi=dpi,
        max_side=max_side,
        ocr=ocr,
        min_text_chars=min_text_chars,
        ocr_lang=ocr_lang,
        ocr_timeout_s=ocr_timeout,
        max_image_pixels=max_image_pixels,
        password=password,
    )
    with counting_bar("ingest (pages)", disable=not progress) as bar:
        report = ingest(inputs, out, settings, workers=workers, progress=bar, executor=executor.value, address=address)
    print_report(report)
    if not report.ok:
        raise typer.Exit(1)
