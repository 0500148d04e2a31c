"""``docrerank export``: every format round-trips, lists stay aligned with their positives, images decode.

Most tests export a hand-built run directory (``selected`` shards written with ``RunDir.write_shard`` over
real pages of the committed PDF); one exports a real tiny run (SmolLM2 via llama.cpp, as in
``test_generate``) and checks the data set against the run's records.
"""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

import datasets
import pyarrow.parquet as pq
import pytest
from PIL import Image

from docrerank.errors import DocrerankError
from docrerank.pages import PageStore
from docrerank.pipeline.config import PipelineConfig
from docrerank.pipeline.export import export_run, read_selected
from docrerank.pipeline.generate import run_pipeline
from docrerank.pipeline.records import QueryRecord, Verdict, query_id
from docrerank.pipeline.rundir import RunDir
from tests.helpers import invoke_cli, run_cli
from tests.pipeline.test_generate import _config

COLUMNS = {
    "image",
    "positive_queries",
    "negative_queries",
    "answer",
    "page_id",
    "doc_id",
    "page_text",
    "rephrased_queries",
    "negative_generators",
    "negative_properties",
    "positive_p_yes",
    "negative_p_yes",
    "provenance",
}


@pytest.fixture(scope="module")
def store(vignette_store) -> PageStore:
    return vignette_store  # the committed 3-page PDF, ingested once per session


def _record(page_id: str, kind: str, text: str, parent: QueryRecord | None = None, **extra) -> QueryRecord:
    parent_id = parent.query_id if parent else None
    yes = kind != "negative"
    verdict = Verdict(p_yes=[0.9, 0.8] if yes else [0.1, 0.2], answerable=yes, unanswerable=not yes, agree=True)
    return QueryRecord(
        query_id=query_id(page_id, kind, text, parent_id),
        page_id=page_id,
        kind=kind,
        text=text,
        parent_id=parent_id,
        generator=extra.pop("generator", "llm:positive" if kind == "positive" else "llm:rephrase"),
        verdict=verdict,
        **extra,
    )


@pytest.fixture(scope="module")
def hand_run(store, tmp_path_factory) -> tuple[Path, list[QueryRecord]]:
    """Page 0: two positives (2 and 1 negatives, one rephrasing); page 1: a positive without negatives;
    page 2: only a negative of a dropped positive (no row)."""
    p0, p1, p2 = store.page_ids
    a = _record(p0, "positive", "What does the breakpoint test detect?", answer="structural change")
    b = _record(p0, "positive", "Which R package implements the tests?", answer="strucchange")
    shard0 = [
        a,
        b,
        _record(p0, "rephrased", "The breakpoint test finds what?", a),
        _record(p0, "negative", "What does the breakpoint test ignore?", a, generator="llm:freeform"),
        _record(
            p0,
            "negative",
            "Which Python package implements the tests?",
            b,
            generator="llm:controlled",
            property="name",
            changed_from="R",
            changed_to="Python",
        ),
        _record(p0, "negative", "What did the 1999 breakpoint test detect?", a, generator="rule:year"),
    ]
    c = _record(p1, "positive", "What is the F statistic used for?")
    orphan = _record(p2, "negative", "What is on page three?", c, generator="llm:freeform")
    run = RunDir(tmp_path_factory.mktemp("hand-run"))
    run.write_shard("selected", "shard-00000", shard0, [])
    run.write_shard("selected", "shard-00001", [c], [])
    run.write_shard("selected", "shard-00002", [orphan.model_copy(update={"parent_id": "gone"})], [])
    run.write_json("fingerprints.json", {"selected": "abc123"})
    return run.root, [*shard0, c]


def _expected(records: list[QueryRecord]) -> dict[str, dict]:
    """(page id, positive text) -> its negatives' texts, rephrasings' texts, from the records."""
    by_id = {r.query_id: r for r in records if r.kind == "positive"}
    out = {(p.page_id, p.text): {"negatives": [], "rephrased": []} for p in by_id.values()}
    for r in records:
        if r.parent_id in by_id:
            parent = by_id[r.parent_id]
            out[parent.page_id, parent.text]["negatives" if r.kind == "negative" else "rephrased"].append(r.text)
    return out


def _check_rows(rows: list[dict], records: list[QueryRecord], store: PageStore) -> None:
    expected = _expected(records)
    assert sum(len(r["positive_queries"]) for r in rows) == len(expected)
    for row in rows:
        n = len(row["positive_queries"])
        for column in (
            "negative_queries",
            "answer",
            "rephrased_queries",
            "negative_generators",
            "negative_properties",
            "positive_p_yes",
            "negative_p_yes",
        ):
            assert len(row[column]) == n, column
        for i, positive in enumerate(row["positive_queries"]):
            want = expected[row["page_id"], positive]
            assert row["negative_queries"][i] == want["negatives"]
            assert row["rephrased_queries"][i] == want["rephrased"]
            assert len(row["negative_generators"][i]) == len(row["negative_queries"][i])
            assert len(row["negative_p_yes"][i]) == len(row["negative_queries"][i])
        page = store.get(row["page_id"])
        assert row["page_text"] == page.text and row["doc_id"] == page.doc_id
        image = row["image"]
        assert isinstance(image, Image.Image) and image.size == (page.width, page.height)
        provenance = json.loads(row["provenance"])
        assert provenance["docrerank_version"]


def test_hf_round_trips_with_aligned_lists(hand_run, store, tmp_path):
    run, records = hand_run
    summary = export_run(run, store, "hf", tmp_path / "hf")
    dataset = datasets.load_from_disk(str(tmp_path / "hf"))
    assert set(dataset.column_names) == COLUMNS
    rows = list(dataset)
    assert [r["page_id"] for r in rows] == store.page_ids[:2]  # shard order; page 2 has no positive
    _check_rows(rows, records, store)
    first = rows[0]
    assert first["positive_queries"] == sorted(
        first["positive_queries"], key=lambda t: query_id(first["page_id"], "positive", t)
    )
    i = first["positive_queries"].index("Which R package implements the tests?")
    assert first["answer"][i] == "strucchange"
    assert first["negative_generators"][i] == ["llm:controlled"]
    assert first["negative_properties"][i] == ["name"]
    assert first["positive_p_yes"][i] == [0.9, 0.8] and first["negative_p_yes"][i] == [0.2]
    assert rows[1]["negative_queries"] == [[]]  # fewer than K negatives: kept as they are
    assert json.loads(first["provenance"])["config_fingerprint"] == "abc123"
    assert summary.rows == 2 and summary.positives == 3 and summary.negatives == 3 and summary.rephrased == 1
    assert summary.negatives_by_generator == Counter({"llm:freeform": 1, "llm:controlled": 1, "rule:year": 1})


def test_parquet_round_trips_with_images(hand_run, store, tmp_path):
    run, records = hand_run
    export_run(run, store, "parquet", tmp_path / "pq")
    files = str(tmp_path / "pq" / "data" / "train-00000.parquet")
    dataset = datasets.load_dataset("parquet", data_files=files, split="train", cache_dir=str(tmp_path / "cache"))
    assert set(dataset.column_names) == COLUMNS
    _check_rows(list(dataset), records, store)


def test_jsonl_one_row_per_positive(hand_run, store, tmp_path):
    run, records = hand_run
    summary = export_run(run, store, "jsonl", tmp_path / "jl")
    rows = [json.loads(line) for line in (tmp_path / "jl" / "queries.jsonl").read_text().splitlines()]
    assert len(rows) == summary.rows == 3
    expected = _expected(records)
    for row in rows:
        want = expected[row["page_id"], row["query"]]
        assert [n["text"] for n in row["negatives"]] == want["negatives"]
        assert [n["text"] for n in row["rephrased"]] == want["rephrased"]
        assert (store.root / row["image_path"]).is_file() and not Path(row["image_path"]).is_absolute()
        assert row["config_fingerprint"] == "abc123"
    controlled = next(n for r in rows for n in r["negatives"] if n["generator"] == "llm:controlled")
    assert controlled["changed_from"] == "R" and controlled["changed_to"] == "Python"
    assert controlled["verdict"]["p_yes"] == [0.1, 0.2]


def test_sentence_transformers_pairs_label_queries_against_the_same_page(hand_run, store, tmp_path):
    run, records = hand_run
    export_run(run, store, "sentence-transformers", tmp_path / "st")
    pairs = [json.loads(line) for line in (tmp_path / "st" / "pairs.jsonl").read_text().splitlines()]
    assert all(set(p) == {"query", "text", "label"} for p in pairs)
    texts = {p.page_id: p.text for p in (store.get(r.page_id) for r in records)}
    expected = {(r.text, texts[r.page_id], 0 if r.kind == "negative" else 1) for r in records}
    assert {(p["query"], p["text"], p["label"]) for p in pairs} == expected
    assert Counter(p["label"] for p in pairs) == Counter({1: 4, 0: 3})
    loaded = datasets.load_dataset(
        "json", data_files=str(tmp_path / "st" / "pairs.jsonl"), split="train", cache_dir=str(tmp_path / "cache")
    )
    assert loaded.column_names == ["query", "text", "label"]


def test_missing_selected_stage_is_a_clear_error(store, tmp_path):
    run = RunDir(tmp_path / "run")
    run.write_shard("positives", "shard-00000", [], [])
    with pytest.raises(DocrerankError, match=r"no finished 'selected' stage.*docrerank generate"):
        read_selected(run.root)
    with pytest.raises(DocrerankError, match="not a run directory"):
        export_run(tmp_path / "nowhere", store, "hf", tmp_path / "out")
    result = invoke_cli("export", run.root, "--pages", store.root, "--format", "jsonl", "--out", tmp_path / "o")
    assert result.exit_code != 0
    assert isinstance(result.exception, DocrerankError) and "docrerank generate" in str(result.exception)


def test_unfinished_run_and_non_empty_out_are_refused(hand_run, store, tmp_path):
    run, _ = hand_run
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("keep me")
    with pytest.raises(DocrerankError, match="not empty"):
        export_run(run, store, "jsonl", tmp_path / "full")
    assert (tmp_path / "full" / "x").read_text() == "keep me"
    export_run(run, store, "jsonl", tmp_path / "full", overwrite=True)
    assert not (tmp_path / "full" / "x").exists()
    with pytest.raises(DocrerankError, match="unknown export format"):
        export_run(run, store, "csv", tmp_path / "csv")


@pytest.mark.slow
def test_cli_export_subprocess(hand_run, store, tmp_path):
    run, _ = hand_run
    result = run_cli("export", run, "--pages", store.root, "--format", "jsonl", "--out", tmp_path / "cli")
    assert result.exit_code == 0, result.stderr
    assert "negatives llm:controlled" in result.stdout and "positives" in result.stdout
    assert len((tmp_path / "cli" / "queries.jsonl").read_text().splitlines()) == 3
    missing = run_cli("export", tmp_path / "nowhere", "--pages", store.root, "--out", tmp_path / "x")
    assert missing.exit_code == 2 and "not a run directory" in missing.stderr


@pytest.mark.slow
def test_real_tiny_run_exports_to_hf(store, finished_run, tmp_path_factory):
    run = tmp_path_factory.mktemp("real-run")
    # the session's run of the same config on all 3 pages asked this page's requests: its answers are reused
    shutil.copy2(finished_run / "cache.sqlite", run / "cache.sqlite")
    run_pipeline(store, PipelineConfig.model_validate(_config()), run, page_ids=store.page_ids[1:2])
    # the finished run's cache.sqlite alone held every answer (its write-ahead log was checkpointed at the end)
    backends = json.loads((run / "stats.json").read_text())["backends"]
    assert all(b["requests_sent"] == 0 and b["cache_hits"] > 0 for b in backends.values()), backends
    out = tmp_path_factory.mktemp("real-export") / "hf"
    result = invoke_cli("export", run, "--pages", store.root, "--format", "hf", "--out", out)
    assert result.exit_code == 0, result.exception
    records = read_selected(run)
    dataset = datasets.load_from_disk(str(out))
    assert len(dataset) == 1 and dataset[0]["negative_queries"]  # the one page kept positives and negatives
    _check_rows(list(dataset), records, store)
    fingerprints = json.loads((run / "fingerprints.json").read_text())
    assert json.loads(dataset[0]["provenance"])["config_fingerprint"] == fingerprints["selected"]
    assert sum(len(g) for row in dataset["negative_generators"] for g in row) == sum(
        r.kind == "negative" for r in records
    )


def test_run_without_positives_exports_an_empty_dataset(store, tmp_path):
    run = RunDir(tmp_path / "run")
    page = store.page_ids[0]
    stray = _record(page, "negative", "What is on no page?", generator="llm:freeform")
    run.write_shard("selected", "shard-00000", [stray.model_copy(update={"parent_id": "gone"})], [])
    summary = export_run(run.root, store, "hf", tmp_path / "hf")
    assert summary.rows == 0
    dataset = datasets.load_from_disk(str(tmp_path / "hf"))
    assert len(dataset) == 0 and set(dataset.column_names) == COLUMNS
    export_run(run.root, store, "parquet", tmp_path / "pq")  # datasets cannot load a 0-row parquet; pyarrow can
    assert pq.read_table(tmp_path / "pq" / "data" / "train-00000.parquet").num_rows == 0
