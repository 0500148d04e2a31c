"""Export a finished generation run (its ``selected`` stage) as a training data set.

Formats (``export_run(run_dir, store, fmt, out)``):

``hf``
    A Hugging Face dataset written with ``Dataset.save_to_disk`` (read it with ``datasets.load_from_disk``).
    One row per page with at least one kept positive, in the ColHNQue layout: ``image`` (an ``Image``
    feature, the page image embedded as PNG bytes), ``positive_queries`` (list of str),
    ``negative_queries`` (one list per positive, same order), ``answer`` (one per positive, ``""`` when the
    generator gave none), plus ``page_id``, ``doc_id``, ``page_text``, ``rephrased_queries`` (one list per
    positive), ``negative_generators`` / ``negative_properties`` (parallel to ``negative_queries``; ``""``
    where a negative changed no named property), ``positive_p_yes`` (per positive, the verifier's
    per-prompt P(yes)), ``negative_p_yes`` (parallel to ``negative_queries``: the *max* over prompts, i.e.
    the verifier's most doubtful view of the negative being unanswerable; ``None`` without a verdict) and
    ``provenance`` (a JSON string: run dir, store, the ``selected`` stage's config fingerprint, docrerank
    version).
``parquet``
    The same table as ``DIR/data/train-00000.parquet``, images as ``{"bytes", "path"}`` structs (PNG bytes
    embedded, path = the image's file name) with the ``datasets`` feature metadata, so
    ``load_dataset("parquet", data_files=...)`` decodes ``image`` to a PIL image.
``jsonl``
    ``DIR/queries.jsonl``: one row per positive with its rephrasings and negatives (full records: generator,
    property, changed_from/to, per-prompt P(yes), evidence); no images, ``image_path`` relative to the store.
``sentence-transformers``
    ``DIR/pairs.jsonl`` with columns ``query``, ``text``, ``label``: the CrossEncoder binary format. Label 1
    for a positive or rephrased query with its page text, 0 for a negative query with the *same* page text.
    There are no (anchor, positive page, negative page) triplets: the generated negatives are *queries* the
    page does not answer, not other pages, so the hard contrast they carry is "same page, nearly the same
    question, wrong answer" — which is exactly a labelled (query, page) pair. Triplets with negative pages
    would need page mining, which a run does not do.

Every format also writes ``DIR/provenance.json``. Order is deterministic: pages in the order of the run's
shards, positives by ``query_id``, negatives and rephrasings in the order the selection kept them.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from docrerank import __version__
from docrerank.errors import DocrerankError, import_optional
from docrerank.pages import PageStore
from docrerank.pipeline.corrections import (
    CorrectionsApplied,
    apply_corrections,
    read_corrections,
    write_labeled_pairs,
)
from docrerank.pipeline.records import QueryRecord, Rejection
from docrerank.pipeline.rundir import RunDir

__all__ = [
    "FORMATS",
    "ExportSummary",
    "export_run",
    "hf_features",
    "page_rows",
    "prepare_out",
    "read_final",
    "read_selected",
    "rejected_negatives",
    "write_image_rows",
    "write_jsonl_lines",
]

FORMATS = ("hf", "parquet", "jsonl", "sentence-transformers")
FINAL_STAGE = "selected"
FIRST_STAGE = "positives"
PARQUET_FILE = "data/train-00000.parquet"
BATCH_ROWS = 64


@dataclass
class ExportSummary:
    """What an export wrote."""

    format: str
    out: Path
    rows: int = 0
    pages: int = 0
    positives: int = 0
    rephrased: int = 0
    negatives: int = 0
    negatives_by_generator: Counter = field(default_factory=Counter)
    files: list[Path] = field(default_factory=list)
    corrections: CorrectionsApplied | None = None  # None: ignored (--ignore-corrections)

    def as_dict(self) -> dict[str, Any]:
        return {
            "corrections": self.corrections.as_dict() if self.corrections else None,
            "format": self.format,
            "out": str(self.out),
            "rows": self.rows,
            "pages": self.pages,
            "positives": self.positives,
            "rephrased": self.rephrased,
            "negatives": self.negatives,
            "negatives_by_generator": dict(sorted(self.negatives_by_generator.items())),
        }


def read_selected(run_dir: str | Path, corrections: bool = True) -> list[QueryRecord]:
    """The records of the run's finished ``selected`` stage, shard by shard, with a person's corrections
    (``corrections.jsonl``) applied unless ``corrections`` is false.

    Raises:
        DocrerankError: not a run directory, no finished ``selected`` stage, or an unfinished run.
    """
    return read_final(run_dir, corrections)[0]


def read_final(run_dir: str | Path, corrections: bool = True) -> tuple[list[QueryRecord], CorrectionsApplied | None]:
    """``read_selected``, and what applying the corrections did (None when they were not applied)."""
    root = Path(run_dir)
    if not root.is_dir():
        raise DocrerankError(f"{root} is not a run directory: make one with `docrerank generate --run-dir {root}`")
    run = RunDir(root)
    shards = run.shards(FINAL_STAGE)
    if not shards:
        raise DocrerankError(
            f"the run {root} has no finished {FINAL_STAGE!r} stage (the pipeline's final output): run "
            f"`docrerank generate --pages STORE --run-dir {root}` first (it resumes an interrupted run)"
        )
    started = run.shards(FIRST_STAGE)
    if len(started) > len(shards):
        raise DocrerankError(
            f"the run {root} is unfinished: {len(shards)} of {len(started)} shards reached the {FINAL_STAGE!r} "
            f"stage. Resume it with `docrerank generate --pages STORE --run-dir {root}` first"
        )
    records = [record for shard in shards for record in run.read_shard(FINAL_STAGE, shard, QueryRecord)]
    made = read_corrections(root)
    if not corrections or not made:
        return records, (CorrectionsApplied() if corrections else None)
    return apply_corrections(records, made, rejected_negatives(run))


def rejected_negatives(run: RunDir) -> list[QueryRecord]:
    """Every negative a stage rejected (filters, verification, selection): what a correction can bring back."""
    records = []
    for stage in sorted(p.name for p in (run.root / "stages").iterdir() if p.is_dir()):
        for shard in run.shards(stage):
            for rejection in run.read_shard(stage, shard, Rejection, rejected=True):
                if rejection.record is not None and rejection.record.kind == "negative":
                    records.append(rejection.record)
    return records


def _provenance(run_dir: Path, store: PageStore, fmt: str) -> dict[str, Any]:
    path = run_dir / "fingerprints.json"
    fingerprints = json.loads(path.read_text()) if path.is_file() else {}
    return {
        "run_dir": str(run_dir.resolve()),
        "store": str(Path(store.root).resolve()),
        "config_fingerprint": fingerprints.get(FINAL_STAGE),
        "docrerank_version": __version__,
        "format": fmt,
    }


def _max_p(record: QueryRecord) -> float | None:
    return max(record.verdict.p_yes) if record.verdict and record.verdict.p_yes else None


def _grouped(records: list[QueryRecord]) -> Iterator[tuple[str, list[QueryRecord], dict[str, list[QueryRecord]]]]:
    """(page id, its positives by query_id, children by parent id) in the order pages first appear."""
    pages: dict[str, list[QueryRecord]] = {}
    children: dict[str, list[QueryRecord]] = defaultdict(list)
    for record in records:
        pages.setdefault(record.page_id, [])
        if record.kind == "positive":
            pages[record.page_id].append(record)
        elif record.parent_id is not None:
            children[record.parent_id].append(record)
    for page_id, positives in pages.items():
        if positives:
            yield page_id, sorted(positives, key=lambda r: r.query_id), children


def _get_page(store: PageStore, page_id: str):
    try:
        return store.get(page_id)
    except KeyError:
        raise DocrerankError(
            f"page {page_id} of the run is not in the store {store.root}: --pages must name the store the run "
            "was generated from"
        ) from None


def page_rows(records: list[QueryRecord], store: PageStore, provenance: str) -> Iterator[dict[str, Any]]:
    """One ColHNQue-style row per page with a positive (``image`` left out: it is the store's image path)."""
    for page_id, positives, children in _grouped(records):
        page = _get_page(store, page_id)
        negatives = [[c for c in children[p.query_id] if c.kind == "negative"] for p in positives]
        yield {
            "image_path": str(store.image_path(page)),
            "page_id": page.page_id,
            "doc_id": page.doc_id,
            "page_text": page.text,
            "positive_queries": [p.text for p in positives],
            "negative_queries": [[n.text for n in group] for group in negatives],
            "answer": [p.answer or "" for p in positives],
            "rephrased_queries": [[c.text for c in children[p.query_id] if c.kind == "rephrased"] for p in positives],
            "negative_generators": [[n.generator for n in group] for group in negatives],
            "negative_properties": [[n.property or "" for n in group] for group in negatives],
            "positive_p_yes": [list(p.verdict.p_yes) if p.verdict else [] for p in positives],
            "negative_p_yes": [[_max_p(n) for n in group] for group in negatives],
            "provenance": provenance,
        }


def hf_features():
    """The ``datasets`` features of the ``hf`` and ``parquet`` exports."""
    ds = import_optional("datasets", "data")
    strings = ds.Sequence(ds.Value("string"))
    scores = ds.Sequence(ds.Sequence(ds.Value("float64")))
    return ds.Features(
        {
            "image": ds.Image(),
            "positive_queries": strings,
            "negative_queries": ds.Sequence(strings),
            "answer": strings,
            "page_id": ds.Value("string"),
            "doc_id": ds.Value("string"),
            "page_text": ds.Value("large_string"),
            "rephrased_queries": ds.Sequence(strings),
            "negative_generators": ds.Sequence(strings),
            "negative_properties": ds.Sequence(strings),
            "positive_p_yes": scores,
            "negative_p_yes": scores,
            "provenance": ds.Value("string"),
        }
    )


def _image(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    return {"bytes": path.read_bytes(), "path": path.name}


def _with_image(row: dict[str, Any]) -> dict[str, Any]:
    """The row with its page image (and its negative pages' images, if any) embedded as PNG bytes."""
    out = {"image": _image(row["image_path"])}
    if "negative_image_paths" in row:
        out["negative_images"] = [_image(path) for path in row["negative_image_paths"]]
    out.update((k, v) for k, v in row.items() if k not in ("image_path", "negative_image_paths"))
    return out


def _image_rows(rows: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for row in rows:
        yield _with_image(row)


def _write_hf(rows: list[dict[str, Any]], out: Path, features) -> list[Path]:
    Dataset = import_optional("datasets", "data").Dataset

    if not rows:  # from_generator refuses an empty generator
        Dataset.from_dict({name: [] for name in features}, features=features).save_to_disk(str(out), num_shards=1)
        return sorted(p for p in out.iterdir() if p.is_file())
    with tempfile.TemporaryDirectory(prefix=".docrerank-export-", dir=out.parent) as cache:
        dataset = Dataset.from_generator(_image_rows, gen_kwargs={"rows": rows}, features=features, cache_dir=cache)
        dataset.save_to_disk(str(out))
        del dataset
    return sorted(p for p in out.iterdir() if p.is_file())


def _write_parquet(rows: list[dict[str, Any]], out: Path, features) -> list[Path]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = features.arrow_schema  # carries the "huggingface" metadata, so `image` decodes on load
    path = out / PARQUET_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    with pq.ParquetWriter(path, schema, compression="zstd") as writer:
        for start in range(0, len(rows), BATCH_ROWS):
            batch = [_with_image(row) for row in rows[start : start + BATCH_ROWS]]
            writer.write_table(pa.Table.from_pylist(batch, schema=schema))
        if not rows:
            writer.write_table(schema.empty_table())
    return [path]


def write_image_rows(rows: list[dict[str, Any]], out: Path, fmt: str, features) -> list[Path]:
    """Rows holding ``image_path`` (and optionally ``negative_image_paths``) written as an ``hf`` dataset or
    as ``parquet``, images embedded, with the given ``datasets`` features."""
    return _write_hf(rows, out, features) if fmt == "hf" else _write_parquet(rows, out, features)


def write_jsonl_lines(path: Path, lines: Iterator[dict[str, Any]]) -> None:
    with path.open("w", encoding="utf-8") as handle:
        for line in lines:
            handle.write(json.dumps(line, ensure_ascii=False) + "\n")


def _query_rows(records: list[QueryRecord], store: PageStore, provenance: dict) -> Iterator[dict[str, Any]]:
    def dump(record: QueryRecord) -> dict[str, Any]:
        return record.model_dump(exclude_none=True, exclude={"page_id", "kind", "parent_id"})

    for page_id, positives, children in _grouped(records):
        page = _get_page(store, page_id)
        for positive in positives:
            kids = children[positive.query_id]
            yield {
                "page_id": page.page_id,
                "doc_id": page.doc_id,
                "image_path": page.image_path,
                "query_id": positive.query_id,
                "query": positive.text,
                "answer": positive.answer,
                "generator": positive.generator,
                **({"corrected": positive.corrected} if positive.corrected else {}),
                "p_yes": list(positive.verdict.p_yes) if positive.verdict else None,
                "rephrased": [dump(c) for c in kids if c.kind == "rephrased"],
                "negatives": [dump(c) for c in kids if c.kind == "negative"],
                "config_fingerprint": provenance["config_fingerprint"],
            }


def _pair_rows(rows: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    seen: set[tuple[str, str, int]] = set()
    for row in rows:
        text = row["page_text"]
        for i, query in enumerate(row["positive_queries"]):
            labelled = [(query, 1), *((q, 1) for q in row["rephrased_queries"][i])]
            labelled += [(q, 0) for q in row["negative_queries"][i]]
            for q, label in labelled:
                key = (q, row["page_id"], label)
                if key not in seen:
                    seen.add(key)
                    yield {"query": q, "text": text, "label": label}


def prepare_out(out: Path, overwrite: bool) -> None:
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        if not overwrite:
            raise DocrerankError(f"{out} exists and is not empty: choose a new --out, or pass --overwrite")
        shutil.rmtree(out) if out.is_dir() else out.unlink()
    out.mkdir(parents=True, exist_ok=True)


def export_run(
    run_dir: str | Path,
    store: PageStore,
    fmt: str,
    out: str | Path,
    overwrite: bool = False,
    corrections: bool = True,
) -> ExportSummary:
    """Export the run's ``selected`` stage in format ``fmt`` (one of ``FORMATS``) into the folder ``out``, with
    a person's corrections applied unless ``corrections`` is false; their readings also go to
    ``corrected_pairs.jsonl`` (labeled pairs for ``evaluate-verifier``)."""
    if fmt not in FORMATS:
        raise DocrerankError(f"unknown export format {fmt!r}: use one of {', '.join(FORMATS)}")
    run_dir, out = Path(run_dir), Path(out)
    records, applied = read_final(run_dir, corrections)
    provenance = _provenance(run_dir, store, fmt)
    rows = list(page_rows(records, store, json.dumps(provenance, sort_keys=True)))
    prepare_out(out, overwrite)

    summary = ExportSummary(format=fmt, out=out, pages=len(rows), corrections=applied)
    for row in rows:
        summary.positives += len(row["positive_queries"])
        summary.rephrased += sum(len(r) for r in row["rephrased_queries"])
        for generators in row["negative_generators"]:
            summary.negatives += len(generators)
            summary.negatives_by_generator.update(generators)

    if fmt in ("hf", "parquet"):
        summary.files = write_image_rows(rows, out, fmt, hf_features())
        summary.rows = len(rows)
    elif fmt == "jsonl":
        path = out / "queries.jsonl"
        write_jsonl_lines(path, _query_rows(records, store, provenance))
        summary.files, summary.rows = [path], summary.positives
    else:
        path = out / "pairs.jsonl"
        pairs = list(_pair_rows(rows))
        write_jsonl_lines(path, iter(pairs))
        summary.files, summary.rows = [path], len(pairs)
    if corrections and write_labeled_pairs(read_corrections(run_dir), out / "corrected_pairs.jsonl"):
        summary.files.append(out / "corrected_pairs.jsonl")
    else:
        (out / "corrected_pairs.jsonl").unlink(missing_ok=True)
    meta = out / "provenance.json"
    meta.write_text(json.dumps({**provenance, "summary": summary.as_dict()}, indent=2) + "\n")
    summary.files.append(meta)
    return summary
