"""Benchmark loaders: on-disk formats into the one ``Benchmark`` form.

- ``load_beir``: the BEIR layout exactly: ``corpus.jsonl`` (``_id``, ``title``, ``text``), ``queries.jsonl``
  (``_id``, ``text``), ``qrels/<split>.tsv`` (``query-id  corpus-id  score`` with its header row). A page's
  text is its title and text joined by a blank line, as BEIR's own dense models read them.
- ``load_store``: pages from ``docrerank ingest`` (a page store), a queries file (``query_id``, ``query``
  a JSONL line) and a TREC qrels file (``query_id 0 page_id grade``).

Every bad line is named with its file and line and the fix; loading stops only when nothing usable is left.
Queries without a judged relevant page are kept out of the metrics (BEIR's convention) and counted in
``Benchmark.notes``.
"""

from __future__ import annotations

import csv
import json
from collections import defaultdict
from pathlib import Path

from docrerank.errors import DocrerankError
from docrerank.evaluation.benchmark import Benchmark, TextCorpus
from docrerank.pages import PageStore
from docrerank.prompts.requests import PageContent

__all__ = ["load_beir", "load_store", "read_trec_qrels"]


def _jsonl(path: Path) -> list[tuple[str, dict]]:
    rows = []
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                rows.append((f"{path}:{number}", json.loads(line)))
            except json.JSONDecodeError as exc:
                raise DocrerankError(f"{path}:{number}: not a JSON line ({exc.msg}); fix or remove it") from None
    return rows


def _need(path: Path, what: str) -> Path:
    if not path.is_file():
        raise DocrerankError(f"{path} does not exist: {what}")
    return path


def _finish(name: str, corpus, queries: dict[str, str], qrels: dict[str, dict[str, int]], source: dict[str, str]):
    notes: list[str] = []
    unknown_pages = sum(1 for judged in qrels.values() for pid in judged if pid not in corpus)
    if unknown_pages:
        notes.append(f"{unknown_pages} judgements name pages the corpus does not hold (left out)")
        qrels = {q: {p: g for p, g in judged.items() if p in corpus} for q, judged in qrels.items()}
    unknown_queries = [q for q in qrels if q not in queries]
    if unknown_queries:
        notes.append(f"{len(unknown_queries)} judged query ids are not among the queries (left out)")
    benchmark = Benchmark(name, corpus, queries, {q: j for q, j in qrels.items() if q in queries}, notes, source)
    unjudged = len(queries) - len(benchmark.judged_queries)
    if unjudged:
        notes.append(f"{unjudged} queries have no relevant page judged: not scored")
    if not benchmark.judged_queries:
        raise DocrerankError(f"{name}: no query has a relevant page in the corpus: check the qrels' ids")
    return benchmark


def load_beir(folder: str | Path, split: str = "test") -> Benchmark:
    """A BEIR-format folder (``corpus.jsonl``, ``queries.jsonl``, ``qrels/<split>.tsv``)."""
    folder = Path(folder)
    pages = []
    for where, row in _jsonl(_need(folder / "corpus.jsonl", "a BEIR folder holds corpus.jsonl")):
        if "_id" not in row or "text" not in row:
            raise DocrerankError(f"{where}: a BEIR corpus line needs _id and text")
        title = (row.get("title") or "").strip()
        text = f"{title}\n\n{row['text']}" if title else row["text"]
        pages.append(PageContent(text=text, page_id=str(row["_id"])))
    queries = {}
    for where, row in _jsonl(_need(folder / "queries.jsonl", "a BEIR folder holds queries.jsonl")):
        if "_id" not in row or "text" not in row:
            raise DocrerankError(f"{where}: a BEIR query line needs _id and text")
        queries[str(row["_id"])] = row["text"]
    qrels_path = _need(folder / "qrels" / f"{split}.tsv", f"no qrels for the split {split!r} (--split)")
    qrels: dict[str, dict[str, int]] = defaultdict(dict)
    with qrels_path.open(encoding="utf-8", newline="") as handle:
        reader = csv.reader(handle, delimiter="\t")
        header = next(reader, None)
        if header is None or [h.strip() for h in header[:2]] != ["query-id", "corpus-id"]:
            raise DocrerankError(f"{qrels_path}:1: BEIR qrels start with the header 'query-id corpus-id score'")
        for number, fields in enumerate(reader, 2):
            if not fields:
                continue
            try:
                query_id, page_id, grade = fields[0], fields[1], int(fields[2])
            except (IndexError, ValueError):
                raise DocrerankError(f"{qrels_path}:{number}: want 'query-id<TAB>corpus-id<TAB>score'") from None
            qrels[query_id][page_id] = grade
    source = {"format": "beir", "path": str(folder.resolve()), "split": split}
    return _finish(folder.name, TextCorpus(pages), queries, dict(qrels), source)


def read_trec_qrels(path: str | Path) -> dict[str, dict[str, int]]:
    """A TREC qrels file: ``query_id iteration page_id grade`` a line."""
    qrels: dict[str, dict[str, int]] = defaultdict(dict)
    for number, line in enumerate(_need(Path(path), "give a TREC qrels file").read_text().splitlines(), 1):
        if not line.strip():
            continue
        fields = line.split()
        try:
            query_id, _, page_id, grade = fields[0], fields[1], fields[2], int(fields[3])
        except (IndexError, ValueError):
            raise DocrerankError(f"{path}:{number}: want four columns 'query_id 0 page_id grade'") from None
        qrels[query_id][page_id] = grade
    return dict(qrels)


def load_store(store: str | Path | PageStore, queries: str | Path, qrels: str | Path) -> Benchmark:
    """A page store with a queries JSONL (``query_id``, ``query``) and TREC qrels over its page ids."""
    store = store if isinstance(store, PageStore) else PageStore.open(store)
    texts = {}
    for where, row in _jsonl(_need(Path(queries), "give a queries JSONL file")):
        if "query_id" not in row or "query" not in row:
            raise DocrerankError(f"{where}: a query line needs query_id and query")
        texts[str(row["query_id"])] = row["query"]
    source = {"format": "store", "path": str(Path(store.root).resolve())}
    source |= {"queries": str(Path(queries).resolve()), "qrels": str(Path(qrels).resolve())}
    return _finish(Path(store.root).name, store, texts, read_trec_qrels(qrels), source)
