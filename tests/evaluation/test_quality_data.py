"""The hand-written quality benchmark set (bench/data/quality-*): its queries, twins and qrels checked against
each other and against the document split; the slow tests check them against the sample pages themselves.

The slow tests ingest the sample packages of the split's documents (several hundred pages). To check against a
store that is already built with the default ingest settings (e.g. the demo's ``runs/demo/pages``), set
``DOCRERANK_QUALITY_STORE`` to its folder.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections import Counter, defaultdict
from pathlib import Path

import pytest

from docrerank.pages import PageStore
from tests.helpers import ROOT

DATA = ROOT / "bench" / "data"
QUERIES = DATA / "quality-queries.jsonl"
QRELS = DATA / "quality-qrels.trec"
SPLIT = DATA / "quality-split.json"

MIN_QUERIES = 60
MIN_PER_DOCUMENT = 4
MIN_PER_KIND = {"text": 1, "table": 10, "figure": 6}
MAX_PER_PAGE = 2
FIELDS = {"query_id", "query", "rephrased", "answer", "page_id", "doc_id", "file", "page_index", "kind"}
WORD = re.compile(r"[a-z0-9]+")


def _queries() -> list[dict]:
    return [json.loads(line) for line in QUERIES.read_text().splitlines() if line.strip()]


def _documents() -> dict[str, dict]:
    return json.loads(SPLIT.read_text())["documents"]


def _qrels() -> dict[str, dict[str, int]]:
    judged: dict[str, dict[str, int]] = defaultdict(dict)
    for line in QRELS.read_text().splitlines():
        if line.strip():
            query_id, zero, page_id, grade = line.split()
            assert zero == "0", line
            assert page_id not in judged[query_id], f"{query_id} judges {page_id} twice"
            judged[query_id][page_id] = int(grade)
    return judged


def _words(text: str) -> set[str]:
    return {w for w in WORD.findall(text.lower()) if len(w) > 2}


def test_every_query_is_on_a_test_document_of_the_split():
    documents = _documents()
    for row in _queries():
        assert set(row) == FIELDS, row["query_id"]
        document = documents.get(row["doc_id"])
        assert document is not None, f"{row['query_id']}: unknown document {row['doc_id']}"
        assert document["split"] == "test", f"{row['query_id']} is on training document {document['file']}"
        assert row["file"] == document["file"], row["query_id"]
        assert 0 <= row["page_index"] < document["pages"], row["query_id"]


def test_counts_per_document_kind_and_page():
    rows = _queries()
    ids = [row["query_id"] for row in rows]
    assert len(rows) >= MIN_QUERIES
    assert len(set(ids)) == len(ids)
    assert all(re.fullmatch(r"q\d{3}", query_id) for query_id in ids)
    test_documents = {doc for doc, d in _documents().items() if d["split"] == "test"}
    per_document = Counter(row["doc_id"] for row in rows)
    assert set(per_document) == test_documents, "every test document has queries"
    assert min(per_document.values()) >= MIN_PER_DOCUMENT
    kinds = Counter(row["kind"] for row in rows)
    assert set(kinds) == set(MIN_PER_KIND)
    for kind, least in MIN_PER_KIND.items():
        assert kinds[kind] >= least, kind
    assert max(Counter(row["page_id"] for row in rows).values()) <= MAX_PER_PAGE


def test_twins_differ_from_their_originals():
    for row in _queries():
        assert row["query"].strip() and row["rephrased"].strip() and row["answer"].strip(), row["query_id"]
        assert _words(row["query"]) != _words(row["rephrased"]), row["query_id"]


def test_every_query_and_twin_has_the_same_judgements_with_its_page_graded_2():
    judged = _qrels()
    rows = _queries()
    expected = {row["query_id"] for row in rows} | {row["query_id"] + "-r" for row in rows}
    assert set(judged) == expected
    for row in rows:
        original, twin = judged[row["query_id"]], judged[row["query_id"] + "-r"]
        assert original == twin, row["query_id"]
        assert original[row["page_id"]] == 2, row["query_id"]
        assert set(original.values()) <= {1, 2}
        assert list(original.values()).count(2) == 1, row["query_id"]


def test_the_rephrased_twins_the_demo_and_benchmarks_rank_are_every_twin_with_its_own_judgements(tmp_path):
    """`rephrased_twins` writes what `make demo`, bench/seeds.py and bench/ceiling.py evaluate: the twins only,
    each with its judgements and none of the originals'."""
    from docrerank.cli.demo import rephrased_twins

    rows = _queries()
    queries, qrels = rephrased_twins(tmp_path / "twins", rows, QRELS.read_text().splitlines(keepends=True))
    written = [json.loads(line) for line in queries.read_text().splitlines()]
    assert written == [{"query_id": row["query_id"] + "-r", "query": row["rephrased"]} for row in rows]
    judged: dict[str, dict[str, int]] = defaultdict(dict)
    for line in qrels.read_text().splitlines():
        query_id, _, page_id, grade = line.split()
        judged[query_id][page_id] = int(grade)
    assert judged == {query_id: pages for query_id, pages in _qrels().items() if query_id.endswith("-r")}


@pytest.fixture(scope="module")
def quality_store(request) -> PageStore:
    """The pages of the split's documents: ``$DOCRERANK_QUALITY_STORE``, else the session's store of every
    sample package (which holds them)."""
    if os.environ.get("DOCRERANK_QUALITY_STORE"):
        return PageStore.open(Path(os.environ["DOCRERANK_QUALITY_STORE"]))
    from docrerank.samples import SamplesUnavailableError

    try:
        return request.getfixturevalue("all_sample_pages")
    except SamplesUnavailableError as error:
        pytest.skip(f"sample packages unavailable: {error}")


@pytest.mark.slow
def test_queries_and_qrels_name_pages_of_the_store(quality_store):
    pages = {page.page_id: page for page in quality_store}
    for row in _queries():
        page = pages.get(row["page_id"])
        assert page is not None, f"{row['query_id']}: page {row['page_id']} is not in the store"
        assert page.doc_id == row["doc_id"], row["query_id"]
        assert page.page_index == row["page_index"], row["query_id"]
        assert Path(page.source_path).name == Path(row["file"]).name, row["query_id"]
    for query_id, judgements in _qrels().items():
        missing = [page_id for page_id in judgements if page_id not in pages]
        assert not missing, f"{query_id} judges pages not in the store: {missing}"


@pytest.mark.slow
def test_twins_share_fewer_page_words_than_their_originals(quality_store):
    pages = {page.page_id: page for page in quality_store}

    def overlap(text: str, page_words: set[str]) -> float:
        words = _words(text)
        return len(words & page_words) / len(words)

    originals, twins = [], []
    for row in _queries():
        page_words = _words(pages[row["page_id"]].text)
        originals.append(overlap(row["query"], page_words))
        twins.append(overlap(row["rephrased"], page_words))
    assert sum(twins) / len(twins) < sum(originals) / len(originals)


def test_the_committed_training_set_holds_only_finished_shards():
    # a half-done shard committed makes the set an unfinished run: the demo and the benches then refuse it
    tracked = subprocess.run(
        ["git", "ls-files", "bench/data/trainset/run/stages"], cwd=ROOT, capture_output=True, text=True
    )
    if tracked.returncode or not tracked.stdout:
        pytest.skip("not a git checkout: the committed files cannot be told from a running generation's")
    shard = re.compile(r"stages/([a-z_]+)/(shard-[0-9a-f]+)\.done$")
    done = defaultdict(set)
    for path in tracked.stdout.split():
        if found := shard.search(path):
            done[found.group(2)].add(found.group(1))
    unfinished = sorted(s for s, stages in done.items() if "selected" not in stages)
    assert not unfinished, f"commit these shards whole or not at all: {unfinished}"
