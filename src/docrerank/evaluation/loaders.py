"""Benchmark loaders: on-disk formats into the one ``Benchmark`` form.

- ``load_beir``: the BEIR layout exactly: ``corpus.jsonl`` (``_id``, ``title``, ``text``), ``queries.jsonl``
  (``_id``, ``text``), ``qrels/<split>.tsv`` (``query-id  corpus-id  score`` with its header row). A page's
  text is its title and text joined by a blank line, as BEIR's own dense models read them.
- ``load_store``: pages from ``docrerank ingest`` (a page store), a queries file (``query_id``, ``query``
  a JSONL line) and a TREC qrels file (``query_id 0 page_id grade``).
- ``load_vidore``: ViDoRe (v1 BEIR and v2) style: ``corpus`` (``corpus-id``, ``image``), ``queries``
  (``query-id``, ``query``) and ``qrels`` (``query-id``, ``corpus-id``, ``score``) tables, from a Hugging Face
  dataset id (three configs) or a local folder holding ``corpus/``, ``queries/`` and ``qrels/`` parquet files.
- ``load_realmm``: Real-MM-RAG style: one table of pages (``image``, ``image_filename``) with a ``query`` on
  some rows and its rephrasings ``rephrase_level_1..3``; ``level`` picks the original (0) or a rephrasing.

Page images of the image benchmarks become a page store (``docrerank ingest`` of the images, OCR on by
default), kept under ``$DOCRERANK_CACHE/benchmarks/``, so their text comes from the same machinery as every
other page's and is computed once: a second load reuses the store.

Every bad line is named with its file and line and the fix, left out and kept in ``Benchmark.skipped``;
loading stops only when nothing usable is left (or a file is not in its format at all: no BEIR qrels header).
Queries without a judged relevant page are kept out of the metrics (BEIR's convention) and counted in
``Benchmark.notes``.
"""

from __future__ import annotations

import hashlib
import json
import re
import tempfile
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from docrerank.errors import DocrerankError, InputError, import_optional
from docrerank.evaluation.benchmark import Benchmark, TextCorpus
from docrerank.pages import IngestSettings, PageStore, ingest
from docrerank.pages.content import PageContent
from docrerank.pipeline.colhnque import png_bytes
from docrerank.samples import default_cache_dir

__all__ = ["load_beir", "load_realmm", "load_store", "load_vidore", "read_trec_qrels"]


def _lines(path: Path, skipped: list[InputError] | None) -> Iterator[tuple[int, str]]:
    """``(number, text)`` of each non-blank line, without its line break; a line that is not UTF-8 goes to
    ``skipped`` (or raises)."""
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, 1):
            try:
                line = raw.decode("utf-8").rstrip("\r\n")
            except UnicodeDecodeError:
                error = InputError(f"{path}:{number}", "not UTF-8 text", "save the file as UTF-8 or remove the line")
                if skipped is None:
                    raise error from None
                skipped.append(error)
                continue
            if line.strip():
                yield number, line


def _jsonl(path: Path, skipped: list[InputError]) -> list[tuple[str, dict]]:
    """``(FILE:LINE, object)`` of each JSON object line; every other non-blank line goes to ``skipped``."""
    rows = []
    for number, line in _lines(path, skipped):
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            skipped.append(InputError(f"{path}:{number}", f"not a JSON line ({exc.msg})", "fix or remove it"))
            continue
        if not isinstance(row, dict):
            skipped.append(InputError(f"{path}:{number}", "not a JSON object", "write one {...} a line"))
            continue
        rows.append((f"{path}:{number}", row))
    return rows


def _need(path: Path, what: str) -> Path:
    if not path.is_file():
        raise DocrerankError(f"{path} does not exist: {what}")
    return path


def _finish(
    name: str,
    corpus,
    queries: dict[str, str],
    qrels: dict[str, dict[str, int]],
    source: dict,
    notes=None,
    skipped: list[InputError] | None = None,
) -> Benchmark:
    notes, skipped = list(notes or []), list(skipped or [])
    unknown_pages = sum(1 for judged in qrels.values() for pid in judged if pid not in corpus)
    if unknown_pages:
        notes.append(f"{unknown_pages} judgements name pages the corpus does not hold (left out)")
        qrels = {q: {p: g for p, g in judged.items() if p in corpus} for q, judged in qrels.items()}
    unknown_queries = [q for q in qrels if q not in queries]
    if unknown_queries:
        notes.append(f"{len(unknown_queries)} judged query ids are not among the queries (left out)")
    judged = {q: j for q, j in qrels.items() if q in queries}
    benchmark = Benchmark(name, corpus, queries, judged, notes, source, skipped)
    unjudged = len(queries) - len(benchmark.judged_queries)
    if unjudged:
        notes.append(f"{unjudged} queries have no relevant page judged: not scored")
    if not benchmark.judged_queries:
        bad = f" ({len(skipped)} bad lines left out, the first: {skipped[0]})" if skipped else ""
        raise DocrerankError(f"{name}: no query has a relevant page in the corpus{bad}: check the qrels' ids")
    return benchmark


def load_beir(folder: str | Path, split: str = "test") -> Benchmark:
    """A BEIR-format folder (``corpus.jsonl``, ``queries.jsonl``, ``qrels/<split>.tsv``)."""
    folder = Path(folder)
    pages, skipped = [], []
    for where, row in _jsonl(_need(folder / "corpus.jsonl", "a BEIR folder holds corpus.jsonl"), skipped):
        if "_id" not in row or "text" not in row:
            skipped.append(InputError(where, "a BEIR corpus line needs _id and text", "add them or remove the line"))
            continue
        title = (row.get("title") or "").strip()
        text = f"{title}\n\n{row['text']}" if title else row["text"]
        pages.append(PageContent(text=text, page_id=str(row["_id"])))
    queries = {}
    for where, row in _jsonl(_need(folder / "queries.jsonl", "a BEIR folder holds queries.jsonl"), skipped):
        if "_id" not in row or "text" not in row:
            skipped.append(InputError(where, "a BEIR query line needs _id and text", "add them or remove the line"))
            continue
        queries[str(row["_id"])] = row["text"]
    qrels_path = _need(folder / "qrels" / f"{split}.tsv", f"no qrels for the split {split!r} (--split)")
    qrels: dict[str, dict[str, int]] = defaultdict(dict)
    lines = _lines(qrels_path, skipped)
    first, header = next(lines, (1, ""))
    if [h.strip() for h in header.split("\t")[:2]] != ["query-id", "corpus-id"]:
        raise DocrerankError(f"{qrels_path}:{first}: BEIR qrels start with the header 'query-id corpus-id score'")
    for number, line in lines:
        fields = line.split("\t")
        try:
            query_id, page_id, grade = fields[0], fields[1], int(fields[2])
        except (IndexError, ValueError):
            fix = "write 'query-id<TAB>corpus-id<TAB>score' (an integer score) or remove the line"
            skipped.append(InputError(f"{qrels_path}:{number}", "not a qrels line", fix))
            continue
        qrels[query_id][page_id] = grade
    source = {"format": "beir", "path": str(folder.resolve()), "split": split}
    return _finish(folder.name, TextCorpus(pages), queries, dict(qrels), source, skipped=skipped)


def read_trec_qrels(path: str | Path, skipped: list[InputError] | None = None) -> dict[str, dict[str, int]]:
    """A TREC qrels file: ``query_id iteration page_id grade`` a line. A bad line goes to ``skipped`` when it is
    given (the rest is read), else it is a ``DocrerankError``."""
    qrels: dict[str, dict[str, int]] = defaultdict(dict)
    for number, line in _lines(_need(Path(path), "give a TREC qrels file"), skipped):
        fields = line.split()
        try:
            query_id, _, page_id, grade = fields[0], fields[1], fields[2], int(fields[3])
        except (IndexError, ValueError):
            error = InputError(
                f"{path}:{number}", "want four columns 'query_id 0 page_id grade'", "fix or remove the line"
            )
            if skipped is None:
                raise error from None
            skipped.append(error)
            continue
        qrels[query_id][page_id] = grade
    return dict(qrels)


def load_store(store: str | Path | PageStore, queries: str | Path, qrels: str | Path) -> Benchmark:
    """A page store with a queries JSONL (``query_id``, ``query``) and TREC qrels over its page ids."""
    store = store if isinstance(store, PageStore) else PageStore.open(store)
    texts, skipped = {}, []
    for where, row in _jsonl(_need(Path(queries), "give a queries JSONL file"), skipped):
        if "query_id" not in row or "query" not in row:
            skipped.append(InputError(where, "a query line needs query_id and query", "add them or remove the line"))
            continue
        texts[str(row["query_id"])] = row["query"]
    source = {"format": "store", "path": str(Path(store.root).resolve())}
    source |= {"queries": str(Path(queries).resolve()), "qrels": str(Path(qrels).resolve())}
    judged = read_trec_qrels(qrels, skipped)
    return _finish(Path(store.root).name, store, texts, judged, source, skipped=skipped)


def _table(source: str, name: str | None, split: str):
    """One table of a Hub dataset (``name`` its config) or of a local folder (``name`` its subfolder)."""
    datasets = import_optional("datasets", "data")
    path = Path(source)
    try:
        if path.exists():
            folder = path / name if name else path
            files = [str(folder)] if folder.is_file() else sorted(str(p) for p in folder.rglob("*.parquet"))
            if not files:
                raise DocrerankError(f"{folder} holds no .parquet files")
            chosen = [f for f in files if Path(f).name.startswith(f"{split}-")] or files
            return datasets.load_dataset("parquet", data_files=chosen, split="train")
        return datasets.load_dataset(source, name, split=split)
    except DocrerankError:
        raise
    except Exception as exc:  # the datasets library raises many kinds: name the source and the fix
        raise DocrerankError(
            f"cannot read {source} ({name or 'table'}, split {split}): {exc}; give a local folder or a dataset id"
        ) from None


def _image_store(images: dict[str, Any], name: str, settings: IngestSettings | None, notes: list[str]):
    """Ingest ``key -> image`` into a cached store: (store, ``key -> page_id``). An image that cannot be read
    or ingested is left out with a note naming it; its judgements then point at no page."""
    encoded = {}
    for key, image in images.items():
        try:
            encoded[key] = png_bytes(image)
        except (OSError, TypeError, KeyError) as exc:
            notes.append(f"page {key!r}: its image cannot be read ({exc}); fix or drop the row")
    digest = hashlib.sha256()
    for key in sorted(encoded):
        digest.update(key.encode() + hashlib.sha256(encoded[key]).digest())
    root = default_cache_dir() / "benchmarks" / f"{re.sub(r'[^A-Za-z0-9_.-]+', '_', name)}-{digest.hexdigest()[:12]}"
    if not (root / "pages.parquet").is_file():
        with tempfile.TemporaryDirectory(prefix="docrerank-benchmark-") as scratch:
            files = []
            for index, key in enumerate(sorted(encoded)):
                files.append(Path(scratch) / f"page-{index:07d}.png")
                files[-1].write_bytes(encoded[key])
            report = ingest(files, root, settings)
            notes += [f"a page image was not ingested: {error}" for error in report.errors]
    store = PageStore.open(root)
    pages = {}
    for key, data in encoded.items():
        found = store.pages_of(hashlib.sha256(data).hexdigest()[:16])  # the store's doc id of that file
        if found:
            pages[key] = found[0].page_id
    return store, pages


def load_vidore(source: str, split: str = "test", settings: IngestSettings | None = None) -> Benchmark:
    """A ViDoRe-style benchmark (corpus, queries and qrels tables) from a dataset id or a local folder."""
    corpus = _table(source, "corpus", split)
    images = {str(row["corpus-id"]): row["image"] for row in corpus.cast_column("image", _undecoded())}
    notes: list[str] = []
    store, page_of = _image_store(images, Path(source).name, settings, notes)
    queries = {str(row["query-id"]): row["query"] for row in _table(source, "queries", split)}
    qrels: dict[str, dict[str, int]] = defaultdict(dict)
    for row in _table(source, "qrels", split):
        page_id = page_of.get(str(row["corpus-id"]), f"missing:{row['corpus-id']}")
        qrels[str(row["query-id"])][page_id] = max(int(row["score"]), qrels[str(row["query-id"])].get(page_id, 0))
    source_info = {"format": "vidore", "path": source, "split": split, "store": str(store.root)}
    return _finish(Path(source).name, store, queries, dict(qrels), source_info, notes)


def load_realmm(source: str, level: int = 0, split: str = "test", settings: IngestSettings | None = None):
    """A Real-MM-RAG-style table: each row a page, some with a query; ``level`` 0 asks the original query,
    1-3 its rephrasing of that level (rows without one are left out and counted)."""
    if level not in (0, 1, 2, 3):
        raise DocrerankError(f"rephrase level {level}: use 0 (the original query) or 1, 2, 3")
    data = _table(source, None, split).cast_column("image", _undecoded())
    column = "query" if level == 0 else f"rephrase_level_{level}"
    if column not in data.column_names:
        raise DocrerankError(f"{source} has no column {column!r}: not a Real-MM-RAG-style table")
    images, asked = {}, []
    for index, row in enumerate(data):
        key = str(row.get("image_filename") or index)
        images.setdefault(key, row["image"])
        if row.get("query"):
            asked.append((str(row.get("id", index)), (row.get(column) or "").strip(), key))
    notes: list[str] = []
    store, page_of = _image_store(images, Path(source).name, settings, notes)
    queries = {query_id: text for query_id, text, _ in asked if text}
    qrels = {query_id: {page_of.get(key, f"missing:{key}"): 1} for query_id, text, key in asked if text}
    benchmark = _finish(
        f"{Path(source).name}{'' if level == 0 else f'-rephrase{level}'}",
        store,
        queries,
        qrels,
        {"format": "realmm", "path": source, "split": split, "level": str(level), "store": str(store.root)},
        notes,
    )
    if len(queries) < len(asked):
        benchmark.notes.append(f"{len(asked) - len(queries)} queries have no level-{level} rephrasing: left out")
    return benchmark


def _undecoded():
    return import_optional("datasets", "data").Image(decode=False)
