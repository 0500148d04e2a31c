"""Ingest: documents in, a page store out, spread over the cores, resumable.

The work is cut into units (a few pages of one document, or one image file). Worker processes render
their pages, read or OCR the text and write the page images; the main process writes each finished unit
to ``units/`` atomically. A rerun (or a run after a crash or kill) reads which pages the finished units
hold and only does the rest. Bad files and bad pages become ``InputError`` entries in ``errors.jsonl``;
the other inputs go on.
"""

from __future__ import annotations

import hashlib
import io
import multiprocessing
import os
import time
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pyarrow as pa
import pyarrow.compute as pc
import pypdfium2 as pdfium
from filelock import FileLock, Timeout

from docrerank import __version__
from docrerank.errors import DocrerankError, InputError
from docrerank.pages.ocr import check_tesseract, tesseract_version
from docrerank.pages.record import TextSource
from docrerank.pages.render import RenderedPage, image_hash, open_pdf, render_image_frames, render_pdf_page
from docrerank.pages.settings import IngestSettings, OcrMode
from docrerank.pages.sources import Source, discover, display_path
from docrerank.pages.store import (
    IMAGES,
    PAGE_SCHEMA,
    UNITS,
    StoreManifest,
    atomic_write_bytes,
    check_settings,
    consolidate,
    now_iso,
    read_manifest,
    unit_tables,
    write_errors,
    write_manifest,
    write_table_atomic,
)

__all__ = ["IngestReport", "ingest"]


@dataclass(frozen=True)
class Unit:
    """A unit of work: some pages of one source (all frames, for an image file)."""

    source: Source
    pages: tuple[int, ...]  # empty for image files: every frame

    @property
    def key(self) -> str:
        if not self.pages:
            return f"{self.source.doc_id}-all"
        # The page set's hash keeps a retry of a unit's failed pages from overwriting that unit's file.
        pages = hashlib.sha256(repr(self.pages).encode()).hexdigest()[:8]
        return f"{self.source.doc_id}-{self.pages[0]:05d}-{self.pages[-1]:05d}-{pages}"

    @property
    def size(self) -> int:
        return len(self.pages) or 1


@dataclass
class IngestReport:
    """What an ingest run did; ``ok`` is False when any input or page failed."""

    store: Path
    documents: int = 0
    pages_new: int = 0
    pages_skipped: int = 0
    pages_in_store: int = 0
    duplicates: int = 0
    by_text_source: Counter = field(default_factory=Counter)
    errors: list[InputError] = field(default_factory=list)
    elapsed_s: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.errors


def _error_fields(exc: BaseException, item: str) -> tuple[str, str, str]:
    if isinstance(exc, InputError):
        return exc.item, exc.reason, exc.fix
    if isinstance(exc, TimeoutError):
        return item, f"OCR timed out ({exc})", "raise --ocr-timeout, or use --ocr never for this file"
    return item, f"{type(exc).__name__}: {exc}", "check the file; if it opens elsewhere, report a bug with it"


def _store_image(store: Path, page: RenderedPage) -> tuple[str, str]:
    page_id = image_hash(page.image)
    relative = f"{IMAGES}/{page_id[:2]}/{page_id}.png"
    target = store / relative
    if not target.exists():
        buffer = io.BytesIO()
        page.image.save(buffer, format="PNG", compress_level=3)
        atomic_write_bytes(target, buffer.getvalue())
    return page_id, relative


def _run_unit(unit: Unit, store: Path, settings: IngestSettings) -> tuple[list[dict], list[tuple[str, str, str]]]:
    """Worker: render the unit's pages, store their images, return their records and per-page errors."""
    records: list[dict] = []
    errors: list[tuple[str, str, str]] = []
    shown = display_path(unit.source.path)

    def keep(page: RenderedPage) -> None:
        page_id, relative = _store_image(store, page)
        records.append(
            {
                "page_id": page_id,
                "doc_id": unit.source.doc_id,
                "source_path": str(unit.source.path),
                "page_index": page.index,
                "width": page.image.width,
                "height": page.image.height,
                "text": page.text,
                "text_source": page.text_source.value,
                "image_path": relative,
            }
        )

    if unit.source.kind == "image":
        try:
            for page in render_image_frames(unit.source, settings):
                keep(page)
        except Exception as exc:  # noqa: BLE001 - any failure of one file is that file's error
            errors.append(_error_fields(exc, shown))
        return records, errors

    try:
        document = open_pdf(unit.source, settings.password)
    except Exception as exc:  # noqa: BLE001
        return records, [_error_fields(exc, shown)]
    try:
        for index in unit.pages:
            try:
                keep(render_pdf_page(document, index, settings))
            except Exception as exc:  # noqa: BLE001 - one bad page does not stop its document
                errors.append(_error_fields(exc, f"{shown}#page{index + 1}"))
    finally:
        document.close()
    return records, errors


def _done_pages(store: Path) -> dict[str, set[int]]:
    """Page indices that finished units hold, by document id (frames of image files count as done
    when the file has any unit)."""
    done: dict[str, set[int]] = {}
    for table in unit_tables(store):
        for doc_id, index in zip(
            table.column("doc_id").to_pylist(), table.column("page_index").to_pylist(), strict=True
        ):
            done.setdefault(doc_id, set()).add(index)
    return done


def _plan_units(
    sources: list[Source], settings: IngestSettings, done: dict[str, set[int]], report: IngestReport
) -> list[Unit]:
    """Cut the sources into units of work, leaving out pages that finished units already hold."""
    units: list[Unit] = []
    for source in sources:
        if source.kind == "image":
            if source.doc_id in done:
                report.pages_skipped += len(done[source.doc_id])
            else:
                units.append(Unit(source, ()))
            continue
        try:
            document = open_pdf(source, settings.password)
        except InputError as exc:
            report.errors.append(exc)
            continue
        count = len(document)
        document.close()
        finished = done.get(source.doc_id, set())
        todo = [index for index in range(count) if index not in finished]
        report.pages_skipped += count - len(todo)
        for start in range(0, len(todo), settings.pages_per_unit):
            units.append(Unit(source, tuple(todo[start : start + settings.pages_per_unit])))
    return units


def _worker_ready() -> bool:
    return True


def _check_workers_start(pool: ProcessPoolExecutor) -> None:
    """Fail clearly when worker processes cannot start at all, instead of blaming every input file."""
    try:
        pool.submit(_worker_ready).result()
    except BrokenProcessPool:
        raise DocrerankError(
            "ingest worker processes could not start. They are spawned and re-import the calling program: "
            "call ingest() from a script file under `if __name__ == '__main__':` (not from stdin), or use "
            "the `docrerank ingest` command"
        ) from None


def _execute(
    units: list[Unit],
    store: Path,
    settings: IngestSettings,
    workers: int,
    report: IngestReport,
    progress: Callable[[int, int], None],
) -> None:
    """Run the units on a process pool, writing each finished unit as it completes.

    A worker that dies (a crash inside a native library) breaks the pool: the units it held are recorded
    as errors, and a fresh pool takes the units that had not finished.
    """
    pending = list(units)
    context = multiprocessing.get_context("spawn")
    total, done = sum(unit.size for unit in units), 0
    progress(done, total)
    while pending:
        with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
            _check_workers_start(pool)
            futures: dict[Future, Unit] = {pool.submit(_run_unit, u, store, settings): u for u in pending}
            pending = []
            broken = False
            while futures:
                finished, _ = wait(futures, return_when=FIRST_COMPLETED)
                for future in finished:
                    unit = futures.pop(future)
                    try:
                        records, errors = future.result()
                    except BrokenProcessPool:
                        if broken:  # only the first casualty is known to have crashed it
                            pending.append(unit)
                            continue
                        broken = True
                        report.errors.append(
                            InputError(
                                display_path(unit.source.path),
                                "the renderer crashed on this file",
                                "check the file with `qpdf --check`; re-create it",
                            )
                        )
                        done += unit.size
                        progress(done, total)
                        continue
                    _write_unit(store, unit, records, errors, report)
                    done += unit.size
                    progress(done, total)


def _write_unit(store: Path, unit: Unit, records: list[dict], errors: list, report: IngestReport) -> None:
    """A finished unit's pages into the store (atomically: a unit is done when its file exists)."""
    table = pa.Table.from_pylist(records, schema=PAGE_SCHEMA)
    write_table_atomic(table, store / UNITS / f"{unit.key}.parquet")
    report.pages_new += len(records)
    report.errors.extend(InputError(*fields) for fields in errors)


def _execute_on_ray(
    units: list[Unit],
    store: Path,
    settings: IngestSettings,
    report: IngestReport,
    progress: Callable[[int, int], None],
    address: str | None,
) -> None:
    """Run the units as Ray tasks (one CPU each) on a cluster whose nodes all reach ``store``; this process
    writes each finished unit, as with the local pool. Ray reruns a task whose node died (its retries); a
    task that fails for good is an error of its file, and the other units go on."""
    try:
        import ray
    except ImportError:
        raise DocrerankError('ingest on Ray needs Ray: pip install "docrerank[ray]"') from None
    if not ray.is_initialized():
        ray.init(address=address, log_to_driver=False, configure_logging=False)
    render = ray.remote(num_cpus=1, max_retries=3)(_run_unit)
    futures = {render.remote(unit, store.resolve(), settings): unit for unit in units}
    total, done = sum(unit.size for unit in units), 0
    progress(done, total)
    while futures:
        finished, _ = ray.wait(list(futures), num_returns=1)
        unit = futures.pop(finished[0])
        try:
            records, errors = ray.get(finished[0])
        except ray.exceptions.RayError as exc:
            reason = f"its Ray task failed ({type(exc).__name__})"
            report.errors.append(
                InputError(display_path(unit.source.path), reason, "rerun ingest: done pages are kept")
            )
        else:
            _write_unit(store, unit, records, errors, report)
        done += unit.size
        progress(done, total)


def ingest(
    inputs: Iterable[str | os.PathLike],
    out: str | os.PathLike,
    settings: IngestSettings | None = None,
    workers: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    executor: Literal["local", "ray"] = "local",
    address: str | None = None,
) -> IngestReport:
    """Ingest PDFs and page images into the page store at ``out`` (created if needed).

    Args:
        inputs: PDF files, image files (PNG, JPEG, TIFF, WebP) and folders (walked recursively).
        out: the store folder.
        settings: rendering and OCR settings; an existing store must have been built with the same ones.
        workers: worker processes (default: the number of cores).
        progress: told ``(pages done, pages to do)`` as units finish (the library draws nothing).
        executor: ``local`` (a process pool of ``workers``) or ``ray`` (a task per unit on the Ray cluster at
            ``address``; ``out`` on a path every node reaches).

    Returns:
        An ``IngestReport``; input errors are in ``report.errors`` (and ``errors.jsonl``), never raised.

    Raises:
        SettingsMismatchError: the store exists and was built with other settings.
        OcrUnavailableError: OCR is on but Tesseract or the language data is missing.
    """
    settings = settings or IngestSettings()
    store = Path(out)
    started = time.perf_counter()
    store.mkdir(parents=True, exist_ok=True)
    if settings.ocr is not OcrMode.NEVER:
        check_tesseract(settings.ocr_lang)
    try:
        lock = FileLock(str(store / ".lock"), timeout=0)
        lock.acquire()
    except Timeout:
        raise DocrerankError(f"another ingest is writing to {store}; wait for it to finish") from None
    try:
        check_settings(store, settings.fingerprint(), settings.output_settings())
        report = IngestReport(store=store)
        sources, report.errors = discover(inputs)
        report.documents = len(sources)
        units = _plan_units(sources, settings, _done_pages(store), report)
        progress = progress or (lambda done, total: None)
        if executor == "ray":
            _execute_on_ray(units, store, settings, report, progress, address)
        else:
            workers = max(1, min(workers or os.cpu_count() or 1, len(units) or 1))
            _execute(units, store, settings, workers, report, progress)

        table = consolidate(store)
        unit_rows = sum(t.num_rows for t in unit_tables(store))
        report.duplicates = unit_rows - table.num_rows
        report.pages_in_store = table.num_rows
        counts = pc.value_counts(table.column("text_source")).to_pylist()
        report.by_text_source = Counter({item["values"]: item["counts"] for item in counts})
        write_errors(store, report.errors)
        previous = read_manifest(store)
        write_manifest(
            store,
            StoreManifest(
                settings=settings.output_settings(),
                fingerprint=settings.fingerprint(),
                docrerank_version=__version__,
                pdfium_version=str(pdfium.PDFIUM_INFO),
                tesseract_version=tesseract_version() if settings.ocr is not OcrMode.NEVER else None,
                created_at=previous.created_at if previous else now_iso(),
                updated_at=now_iso(),
                documents=len(set(table.column("doc_id").to_pylist())),
                pages=table.num_rows,
                pages_by_text_source={
                    source.value: report.by_text_source.get(source.value, 0) for source in TextSource
                },
            ),
        )
    finally:
        lock.release()
    report.elapsed_s = time.perf_counter() - started
    return report
