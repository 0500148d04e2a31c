"""Start from a ColHNQue-format dataset: its page images become a page store, its queries given positives.

ColHNQue (the paper's released data, and what ``docrerank export --format hf`` writes) has one row per page:
``image``, ``positive_queries`` (list of str), ``negative_queries`` (one list per positive) and ``answer``
(one per positive). ``import_colhnque`` writes each row's image to a PNG, ingests those through the normal
page ingest (so page ids are the same pixel hashes, and the text comes from OCR: the images carry no text
layer), and writes a given-positives JSONL (``{page_id, query, answer, negatives, row}`` a line) for
``positives: {given: FILE}`` in the pipeline config. The row's negative queries are then filtered and
verified with the generated ones, so a run both re-checks the dataset's negatives and adds its own.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from docrerank.errors import DocrerankError, InputError, import_optional
from docrerank.pages import PageStore, ingest
from docrerank.pages.settings import IngestSettings
from docrerank.pages.store import atomic_write_bytes

__all__ = ["ImportSummary", "import_colhnque", "png_bytes", "read_rows", "row_queries"]

log = logging.getLogger(__name__)


@dataclass
class ImportSummary:
    """What an import wrote."""

    rows: int = 0
    pages: int = 0
    positives: int = 0
    negatives: int = 0
    errors: list[InputError] = field(default_factory=list)


def read_rows(source: str, split: str = "train"):
    """The rows of a ColHNQue-format dataset: a ``save_to_disk`` folder, parquet file(s), or a Hub name.

    Raises:
        DocrerankError: the source cannot be read, or lacks the ``image`` and ``positive_queries`` columns.
    """
    datasets = import_optional("datasets", "data")
    path = Path(source)
    try:
        if path.is_dir() and ((path / "dataset_info.json").exists() or (path / "dataset_dict.json").exists()):
            data = datasets.load_from_disk(str(path))
        elif path.is_dir() or path.suffix == ".parquet":
            files = sorted(str(p) for p in path.rglob("*.parquet")) if path.is_dir() else [str(path)]
            if not files:
                raise DocrerankError(f"{path} holds no .parquet files and no saved dataset")
            data = datasets.load_dataset("parquet", data_files=files, split="train")
        elif path.exists():
            raise DocrerankError(f"{path} is neither a saved dataset folder nor parquet: give one of those")
        else:  # a Hugging Face Hub name, for users with a network
            data = datasets.load_dataset(source, split=split)
    except (OSError, ValueError) as exc:
        raise DocrerankError(
            f"cannot read the dataset {source!r} ({exc}); give a saved dataset folder, parquet, or a Hub name"
        ) from None
    if isinstance(data, datasets.DatasetDict):
        if split not in data:
            raise DocrerankError(f"the dataset {source!r} has no split {split!r}; its splits: {', '.join(data)}")
        data = data[split]
    missing = {"image", "positive_queries"} - set(data.column_names)
    if missing:
        raise DocrerankError(
            f"the dataset {source!r} lacks the column(s) {', '.join(sorted(missing))} of the ColHNQue format "
            f"(it has: {', '.join(data.column_names)})"
        )
    return data


def _as_list(value: Any) -> list:
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)


def row_queries(row: dict[str, Any]) -> list[tuple[str, str, list[str]]]:
    """(query, answer, negatives) per positive of one row; the three columns are parallel lists."""
    positives = [str(q).strip() for q in _as_list(row.get("positive_queries"))]
    answers = _as_list(row.get("answer"))
    negatives = _as_list(row.get("negative_queries"))
    if negatives and all(isinstance(n, str) for n in negatives) and len(positives) == 1:
        negatives = [negatives]  # a flat list of negatives for a single positive
    result = []
    for i, query in enumerate(positives):
        if not query:
            continue
        answer = str(answers[i]).strip() if i < len(answers) and answers[i] is not None else ""
        own = [str(n).strip() for n in _as_list(negatives[i] if i < len(negatives) else None) if str(n).strip()]
        result.append((query, answer, own))
    return result


def png_bytes(image: Any) -> bytes:
    """PNG bytes of a decoded PIL image or an undecoded ``datasets`` Image (``{"bytes", "path"}``)."""
    if isinstance(image, dict):  # an undecoded Image feature
        image = Image.open(io.BytesIO(image["bytes"])) if image.get("bytes") else Image.open(image["path"])
    if not isinstance(image, Image.Image):
        raise TypeError(f"not an image but {type(image).__name__}")
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="PNG")
    return buffer.getvalue()


def import_colhnque(
    source: str,
    store_dir: str | Path,
    positives_path: str | Path,
    settings: IngestSettings | None = None,
    split: str = "train",
    limit: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> ImportSummary:
    """Ingest a ColHNQue-format dataset's pages into ``store_dir`` and write its queries to ``positives_path``.

    A row whose image cannot be read or that has no positive query is an error naming the row (in the
    summary and the store's ``errors.jsonl`` for images); the other rows go on. Rerunning resumes: pages
    already in the store are not ingested again.
    """
    data = read_rows(source, split)
    rows = range(len(data) if limit is None else min(limit, len(data)))
    summary = ImportSummary(rows=len(rows))
    doc_of_row: dict[int, str] = {}
    queries_of_row: dict[int, list[tuple[str, str, list[str]]]] = {}
    with tempfile.TemporaryDirectory(prefix="docrerank-import-") as scratch:
        files = []
        for index in rows:
            row = data[index]
            item = f"{source}#row{index}"
            queries = row_queries(row)
            if not queries:
                summary.errors.append(InputError(item, "the row has no positive query", "drop the row or add one"))
                continue
            try:
                png = png_bytes(row["image"])
            except (OSError, TypeError, KeyError) as exc:
                summary.errors.append(InputError(item, f"the image cannot be read ({exc})", "fix or drop the row"))
                continue
            file = Path(scratch) / f"row-{index:07d}.png"
            file.write_bytes(png)
            files.append(file)
            doc_of_row[index] = hashlib.sha256(png).hexdigest()[:16]  # the page store's doc id of that file
            queries_of_row[index] = queries
        report = ingest(files, store_dir, settings, progress=progress)
        summary.errors += report.errors
    store = PageStore.open(store_dir)
    lines = []
    for index, doc_id in doc_of_row.items():
        pages = store.pages_of(doc_id)
        if not pages:
            continue  # its ingest error is in the report
        summary.pages += 1
        for query, answer, negatives in queries_of_row[index]:
            line = {"page_id": pages[0].page_id, "query": query, "answer": answer, "negatives": negatives, "row": index}
            lines.append(json.dumps(line, ensure_ascii=False) + "\n")
            summary.positives += 1
            summary.negatives += len(negatives)
    atomic_write_bytes(Path(positives_path), "".join(lines).encode())
    for error in summary.errors:
        log.warning("%s", error)
    return summary
