"""The page store on disk, and its Python API.

Layout of a store folder::

    manifest.json        settings that decided the output, tool versions, counts
    pages.parquet        one row per distinct page (the ``Page`` fields); what readers use
    images/ab/<id>.png   page images, named by their content hash, written once
    units/<doc>-<a>-<b>.parquet
                         the pages of one unit of ingest work (pages a..b of one document), written
                         atomically when the unit is done: their presence is what makes resume work
    errors.jsonl         inputs the last ingest could not use: file, reason, fix

``pages.parquet`` is rebuilt from ``units/`` at the end of every ingest, so it always reflects every unit
done so far; it reads with pandas (``pd.read_parquet``) and Hugging Face ``datasets``
(``load_dataset("parquet", data_files=...)``).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image
from pydantic import BaseModel, ConfigDict

from docrerank.errors import DocrerankError, SettingsMismatchError
from docrerank.pages.record import Page

__all__ = ["PAGE_SCHEMA", "PageStore", "StoreManifest", "atomic_write_bytes"]

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
PAGES = "pages.parquet"
IMAGES = "images"
UNITS = "units"
ERRORS = "errors.jsonl"

PAGE_SCHEMA = pa.schema(
    [
        ("page_id", pa.string()),
        ("doc_id", pa.string()),
        ("source_path", pa.string()),
        ("page_index", pa.int32()),
        ("width", pa.int32()),
        ("height", pa.int32()),
        ("text", pa.large_string()),
        ("text_source", pa.string()),
        ("image_path", pa.string()),
    ]
)


class StoreManifest(BaseModel):
    """What a store holds and how it was made (``manifest.json``)."""

    model_config = ConfigDict(extra="ignore")

    format_version: int = FORMAT_VERSION
    settings: dict
    fingerprint: str
    docrerank_version: str
    pdfium_version: str
    tesseract_version: str | None = None
    created_at: str
    updated_at: str
    documents: int = 0
    pages: int = 0
    pages_by_text_source: dict[str, int] = {}


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write a file so that readers (and a resumed run) see either nothing or all of it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_table_atomic(table: pa.Table, path: Path) -> None:
    """Write a parquet file atomically (temporary file in the same folder, then rename)."""
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="zstd")
    atomic_write_bytes(path, sink.getvalue().to_pybytes())


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class PageStore:
    """A page store opened for reading: iterate pages, look them up by id, load their images.

    Example:
        >>> store = PageStore.open("runs/demo/pages")  # doctest: +SKIP
        >>> page = next(iter(store))                    # doctest: +SKIP
        >>> store.image(page).size                      # doctest: +SKIP
    """

    def __init__(self, root: Path, manifest: StoreManifest, table: pa.Table):
        self.root = root
        self.manifest = manifest
        self._table = table
        ids = table.column("page_id").to_pylist()
        self._row_of = {page_id: row for row, page_id in enumerate(ids)}

    @classmethod
    def open(cls, path: str | os.PathLike) -> PageStore:
        """Open a store written by ``docrerank ingest``; a clear error if ``path`` is not one."""
        root = Path(path)
        manifest_path = root / MANIFEST
        if not manifest_path.is_file():
            raise DocrerankError(
                f"{root} is not a page store (no {MANIFEST}): create one with `docrerank ingest INPUT --out {root}`"
            )
        manifest = StoreManifest.model_validate_json(manifest_path.read_text())
        if manifest.format_version != FORMAT_VERSION:
            raise DocrerankError(
                f"{root} has store format {manifest.format_version}, this docrerank reads {FORMAT_VERSION}: "
                "re-ingest the documents into a new store"
            )
        pages_path = root / PAGES
        table = pq.read_table(pages_path) if pages_path.is_file() else PAGE_SCHEMA.empty_table()
        return cls(root, manifest, table)

    def __len__(self) -> int:
        return self._table.num_rows

    def __contains__(self, page_id: object) -> bool:
        return page_id in self._row_of

    def __iter__(self) -> Iterator[Page]:
        for batch in self._table.to_batches(max_chunksize=1024):
            for row in batch.to_pylist():
                yield Page(**row)

    def __repr__(self) -> str:
        return f"PageStore({str(self.root)!r}, pages={len(self)}, documents={len(self.doc_ids)})"

    @property
    def page_ids(self) -> list[str]:
        return self._table.column("page_id").to_pylist()

    @property
    def doc_ids(self) -> list[str]:
        """Distinct document ids, in store order."""
        return list(dict.fromkeys(self._table.column("doc_id").to_pylist()))

    def get(self, page_id: str) -> Page:
        """The page with this id; ``KeyError`` naming the store if there is none."""
        row = self._row_of.get(page_id)
        if row is None:
            raise KeyError(f"page {page_id!r} is not in the store {self.root}")
        return Page(**self._table.slice(row, 1).to_pylist()[0])

    __getitem__ = get

    def pages_of(self, doc_id: str) -> list[Page]:
        """The pages of one document, in page order."""
        return sorted((p for p in self if p.doc_id == doc_id), key=lambda p: p.page_index)

    def image_path(self, page: Page | str) -> Path:
        page = self.get(page) if isinstance(page, str) else page
        return self.root / page.image_path

    def image(self, page: Page | str) -> Image.Image:
        """The page image, loaded (RGB)."""
        with Image.open(self.image_path(page)) as image:
            return image.convert("RGB")

    def to_arrow(self) -> pa.Table:
        return self._table

    def to_pandas(self):
        return self._table.to_pandas()


def read_manifest(root: Path) -> StoreManifest | None:
    path = root / MANIFEST
    return StoreManifest.model_validate_json(path.read_text()) if path.is_file() else None


def check_settings(root: Path, fingerprint: str, settings: dict) -> None:
    """Refuse to add pages made with other settings to an existing store, naming what differs."""
    manifest = read_manifest(root)
    if manifest is None or manifest.fingerprint == fingerprint:
        return
    differ = sorted(k for k in set(settings) | set(manifest.settings) if settings.get(k) != manifest.settings.get(k))
    detail = ", ".join(f"{k}: store has {manifest.settings.get(k)!r}, now {settings.get(k)!r}" for k in differ)
    raise SettingsMismatchError(
        f"the store {root} was built with other settings ({detail}); pages rendered two ways would mix. "
        "Use the store's settings, or a new --out folder"
    )


def write_manifest(root: Path, manifest: StoreManifest) -> None:
    atomic_write_bytes(root / MANIFEST, (manifest.model_dump_json(indent=2) + "\n").encode())


def unit_tables(root: Path) -> list[pa.Table]:
    """The tables of all finished units."""
    folder = root / UNITS
    if not folder.is_dir():
        return []
    return [pq.read_table(path, schema=PAGE_SCHEMA) for path in sorted(folder.glob("*.parquet"))]


def consolidate(root: Path) -> pa.Table:
    """Rebuild ``pages.parquet`` from the finished units: one row per page id, in source order."""
    tables = unit_tables(root)
    table = pa.concat_tables(tables) if tables else PAGE_SCHEMA.empty_table()
    table = table.sort_by([("source_path", "ascending"), ("page_index", "ascending")])
    ids = table.column("page_id").to_pylist()
    first_rows = sorted({page_id: row for row, page_id in reversed(list(enumerate(ids)))}.values())
    table = table.take(pa.array(first_rows, type=pa.int64()))
    write_table_atomic(table, root / PAGES)
    return table


def write_errors(root: Path, errors: list) -> None:
    lines = [json.dumps({"file": e.item, "reason": e.reason, "fix": e.fix}, ensure_ascii=False) for e in errors]
    atomic_write_bytes(root / ERRORS, ("\n".join(lines) + ("\n" if lines else "")).encode())
