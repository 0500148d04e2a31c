"""Starting from a ColHNQue-format dataset: ``docrerank import`` then a run with the dataset's queries.

The dataset is one this project's export wrote (a hand-built run over the committed PDF's pages), plus
one built with ``datasets`` in the paper's four columns, with bad rows; the run uses SmolLM2 as
``test_generate`` does (plumbing, not quality).
"""

from __future__ import annotations

import json

import datasets
import pytest

from docrerank.errors import DocrerankError
from docrerank.pages import PageStore
from docrerank.pipeline.colhnque import import_colhnque
from docrerank.pipeline.config import PipelineConfig
from docrerank.pipeline.export import export_run
from docrerank.pipeline.generate import run_pipeline
from docrerank.pipeline.records import QueryRecord, Rejection
from docrerank.pipeline.rundir import RunDir
from tests.helpers import invoke_cli
from tests.pipeline.test_export import hand_run, store  # noqa: F401  (fixtures)
from tests.pipeline.test_generate import _config


def _lines(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.slow
def test_an_exported_run_imports_back_to_the_same_pages_and_queries(store, hand_run, tmp_path):  # noqa: F811
    run_dir, records = hand_run
    export_run(run_dir, store, "hf", tmp_path / "hf")
    positives = tmp_path / "positives.jsonl"
    summary = import_colhnque(str(tmp_path / "hf"), tmp_path / "store", positives)
    assert (summary.rows, summary.pages, summary.positives, summary.errors) == (2, 2, 3, [])
    imported = PageStore.open(tmp_path / "store")
    lines = _lines(positives)
    # the same pixels give the same page ids, so queries land on the pages they were made for
    assert {line["page_id"] for line in lines} <= set(store.page_ids)
    by_query = {line["query"]: line for line in lines}
    for record in records:
        if record.kind == "positive":
            negatives = [r.text for r in records if r.kind == "negative" and r.parent_id == record.query_id]
            assert by_query[record.text]["page_id"] == record.page_id
            assert by_query[record.text]["negatives"] == negatives
    assert all(imported.get(line["page_id"]).text_source.value == "ocr" for line in lines)
    assert "breakpoint" in imported.get(records[0].page_id).text.lower()  # OCR read the real page
    again = import_colhnque(str(tmp_path / "hf"), tmp_path / "store", positives)
    assert again.positives == 3 and len(PageStore.open(tmp_path / "store")) == 2


@pytest.mark.slow
def test_bad_rows_are_named_and_the_rest_is_imported(store, tmp_path):  # noqa: F811
    page = store.get(store.page_ids[0])
    data = datasets.Dataset.from_dict(
        {
            "image": [store.image(page), None, store.image(page)],
            "positive_queries": [["What does the breakpoint test detect?"], ["What is missing?"], []],
            "negative_queries": [[["What does the breakpoint test ignore?", ""]], [[]], []],
            "answer": [["structural change"], [""], []],
        },
        features=datasets.Features(
            {
                "image": datasets.Image(),
                "positive_queries": datasets.Sequence(datasets.Value("string")),
                "negative_queries": datasets.Sequence(datasets.Sequence(datasets.Value("string"))),
                "answer": datasets.Sequence(datasets.Value("string")),
            }
        ),
    )
    data.to_parquet(tmp_path / "colhnque.parquet")
    positives = tmp_path / "positives.jsonl"
    result = invoke_cli(
        "import",
        tmp_path / "colhnque.parquet",
        "--pages",
        tmp_path / "store",
        "--positives",
        positives,
        "--no-progress",
    )
    assert result.exit_code == 1, result.stdout
    assert (
        "#row1: the image cannot be read" in result.stdout and "#row2: the row has no positive query" in result.stdout
    )
    assert _lines(positives) == [
        {
            "page_id": page.page_id,
            "query": "What does the breakpoint test detect?",
            "answer": "structural change",
            "negatives": ["What does the breakpoint test ignore?"],
            "row": 0,
        }
    ]


def test_a_source_without_the_colhnque_columns_is_refused(tmp_path):
    datasets.Dataset.from_dict({"text": ["a"]}).to_parquet(tmp_path / "other.parquet")
    with pytest.raises(DocrerankError, match="lacks the column"):
        import_colhnque(str(tmp_path / "other.parquet"), tmp_path / "store", tmp_path / "p.jsonl")
    with pytest.raises(DocrerankError, match="neither a saved dataset folder nor parquet"):
        (tmp_path / "notes.txt").write_text("x")
        import_colhnque(str(tmp_path / "notes.txt"), tmp_path / "store", tmp_path / "p.jsonl")


@pytest.mark.slow
def test_the_datasets_negatives_are_verified_with_the_generated_ones(store, tmp_path):  # noqa: F811
    page = store.get(store.page_ids[0])
    given = tmp_path / "positives.jsonl"
    line = {
        "page_id": page.page_id,
        "query": "What does the breakpoint test detect?",
        "negatives": ["What does the breakpoint test ignore?", "What does the breakpoint test detect?"],
    }
    given.write_text(json.dumps(line) + "\n")
    config = _config(
        positives={"given": str(given)},
        rephrased={"enabled": False},
        negative_candidates={
            "freeform": {"enabled": False},
            "controlled": {"enabled": False},
            "rulebased": {"enabled": False},
        },
    )
    run_pipeline(store, PipelineConfig.model_validate(config), tmp_path / "run")
    run = RunDir(tmp_path / "run")
    (shard,) = run.shards("negative_candidates")
    kept = run.read_shard("negative_candidates", shard, QueryRecord)
    rejected = run.read_shard("negative_candidates", shard, Rejection, rejected=True)
    negatives = [r for r in kept if r.kind == "negative"]
    assert [(r.text, r.generator) for r in negatives] == [("What does the breakpoint test ignore?", "given")]
    assert [r.reason.split(":")[0] for r in rejected] == ["filter identical_to_positive"]
    verified = run.read_shard("negatives_verified", shard, QueryRecord)
    checked = [r for r in verified if r.kind == "negative"]
    dropped = (run.root / "stages" / "negatives_verified" / f"{shard}.rejected.jsonl").read_text()
    assert checked or "What does the breakpoint test ignore?" in dropped  # it was put to the verifier
    assert all(r.verdict is not None for r in checked)
