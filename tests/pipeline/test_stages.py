"""The pipeline's shape: a stage is one class, a pipeline a list of them, an executor reports progress.

The model is the FAKE loopback server (valid structured answers, yes/no log-probabilities): these tests are
about which stages run, what they write and what the run refuses, not about what a model says.
"""

from __future__ import annotations

import json
import warnings
from collections import defaultdict

import pytest

from docrerank.backends import CapabilityError
from docrerank.errors import DocrerankError
from docrerank.pipeline.config import PipelineConfig
from docrerank.pipeline.export import read_selected
from docrerank.pipeline.generate import run_pipeline
from docrerank.pipeline.records import QueryRecord, Rejection
from docrerank.pipeline.rundir import RunDir
from docrerank.pipeline.stage import Pipeline, Stage
from docrerank.pipeline.stages import DEFAULT_STAGES, STAGES
from docrerank.testing.fake_server import FakeOpenAIServer

pytestmark = pytest.mark.timeout(120)


def _config(server: FakeOpenAIServer, verifier: dict | None = None, **settings) -> PipelineConfig:
    backend = server.backend_config(max_concurrency=4)
    return PipelineConfig.model_validate(
        {
            "pages_per_shard": 2,
            "backends": {"generator": backend, "verifier": backend | (verifier or {})},
            "positives": {"n": 2},
            "positives_verified": {"keep": 2},
            "negative_candidates": {"freeform": {"m": 3}, "controlled": {"enabled": False}},
            "negatives_verified": {"threshold": 0.99},
            **settings,
        }
    )


@pytest.fixture(scope="module")
def pages(vignette_store):
    return vignette_store, [p.page_id for p in vignette_store if p.text.strip()]


class OneNegativeEach(Stage):
    """A stage written for this test: each positive keeps its first verified negative (by id)."""

    name = "one_negative_each"
    reads = frozenset({"positive", "negative"})

    def enabled(self, config) -> bool:
        return True  # no config section of its own

    def fingerprint_parts(self, ctx):
        return "first by id"

    def run(self, ctx, pages, upstream):
        negatives = defaultdict(list)
        for record in upstream:
            if record.kind == "negative":
                negatives[record.parent_id].append(record)
        kept = [r for r in upstream if r.kind != "negative"]
        rejected = []
        for group in negatives.values():
            first, *rest = sorted(group, key=lambda r: r.query_id)
            kept.append(first)
            rejected += [Rejection(stage=self.name, reason="one negative each", record=r) for r in rest]
        return kept, rejected


def test_a_stage_is_one_class_that_runs_resumes_and_is_counted_like_the_built_in_ones(pages, tmp_path):
    store, ids = pages
    stages = DEFAULT_STAGES[:-1] + [OneNegativeEach(), DEFAULT_STAGES[-1]]
    run = tmp_path / "run"
    with FakeOpenAIServer(answer_schemas=True) as server:
        first = run_pipeline(store, _config(server), run, page_ids=ids, pipeline=Pipeline(stages))
        sent = server.log.requests
        again = run_pipeline(store, _config(server), run, page_ids=ids, pipeline=Pipeline(stages))
        assert server.log.requests == sent, "a finished run asked again"
    folder = RunDir(run)
    assert set(folder.shards("one_negative_each")) == set(folder.shard_pages())
    verified = [
        r for s in folder.shards("negatives_verified") for r in folder.read_shard("negatives_verified", s, QueryRecord)
    ]
    mine = [
        r for s in folder.shards("one_negative_each") for r in folder.read_shard("one_negative_each", s, QueryRecord)
    ]
    dropped = [
        r
        for s in folder.shards("one_negative_each")
        for r in folder.read_shard("one_negative_each", s, Rejection, True)
    ]
    per_positive = defaultdict(int)
    for record in mine:
        if record.kind == "negative":
            per_positive[record.parent_id] += 1
    negatives = sum(r.kind == "negative" for r in verified)
    assert negatives > len(per_positive) > 0, "the fake run made too few negatives for the stage to drop any"
    assert set(per_positive.values()) == {1}
    assert len(dropped) == negatives - len(per_positive)
    assert {r.reason for r in dropped} == {"one negative each"}
    # what comes after it reads its output: selection sees one negative per positive
    assert {r.query_id for r in read_selected(run) if r.kind == "negative"} <= {r.query_id for r in mine}
    assert "one_negative_each" in json.loads((run / "fingerprints.json").read_text())
    assert json.loads((run / "stats.json").read_text())["stages"]["one_negative_each"]["rejected"] == len(dropped)
    assert (first.shards, again.shards_resumed) == (2, 2)


def test_a_pipeline_refuses_a_stage_whose_input_no_stage_before_makes_or_a_name_twice():
    with pytest.raises(DocrerankError, match="negatives_verified reads negative records, which no stage before"):
        Pipeline([DEFAULT_STAGES[0], DEFAULT_STAGES[4]])
    with pytest.raises(DocrerankError, match="names each stage once"):
        Pipeline([DEFAULT_STAGES[0], DEFAULT_STAGES[0]])


def test_a_stage_whose_backend_lacks_what_it_needs_is_refused_before_any_request(pages, tmp_path):
    store, ids = pages
    no_logprobs = {"supports_logprobs": False}
    with FakeOpenAIServer(answer_schemas=True) as server:
        with pytest.raises(CapabilityError, match="positives_verified"):
            run_pipeline(store, _config(server, no_logprobs), tmp_path / "run", page_ids=ids[:1])
        assert server.log.requests == 0
        # with the stages that need token probabilities switched off, the same backends run
        off = {"enabled": False}
        config = _config(server, no_logprobs, positives_verified=off, rephrased=off, negatives_verified=off)
        report = run_pipeline(store, config, tmp_path / "run2", page_ids=ids[:1])
    assert report.shards == 1 and not report.failed
    assert any(r.kind == "negative" for r in read_selected(tmp_path / "run2"))


def test_progress_goes_through_the_callback_and_the_library_prints_nothing(pages, tmp_path, capfd):
    store, ids = pages
    events = []
    with FakeOpenAIServer(answer_schemas=True) as server:
        run_pipeline(store, _config(server), tmp_path / "run", page_ids=ids, on_progress=lambda *e: events.append(e))
    assert events[: len(STAGES)] == [(stage, 0, 2) for stage in STAGES]
    for stage in STAGES:
        assert [done for name, done, _ in events if name == stage] == [0, 1, 2]
    out, err = capfd.readouterr()
    assert (out, err) == ("", "")


def test_config_sections_are_the_stages_names_and_the_old_names_still_read_with_a_warning():
    assert set(STAGES) <= set(PipelineConfig.model_fields)
    old = {
        "positive_verification": {"keep": 2},
        "rephrase": {"fraction": 0.25},
        "negatives_freeform": {"m": 4},
        "negatives_controlled": {"per_property": 1},
        "negatives_rulebased": {"m": 2},
        "negative_verification": {"threshold": 0.3},
        "selection": {"k": 5},
    }
    new = {
        "positives_verified": {"keep": 2},
        "rephrased": {"fraction": 0.25},
        "negative_candidates": {"freeform": {"m": 4}, "controlled": {"per_property": 1}, "rulebased": {"m": 2}},
        "negatives_verified": {"threshold": 0.3},
        "selected": {"k": 5},
    }
    with pytest.warns(FutureWarning) as caught:
        read = PipelineConfig.model_validate(old)
    assert read == PipelineConfig.model_validate(new)
    assert {str(w.message).split("'")[1] for w in caught} == set(old)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        PipelineConfig.model_validate(new)  # the new names warn of nothing
    with pytest.raises(ValueError, match="keep selected only"):
        PipelineConfig.model_validate({"selection": {"k": 1}, "selected": {"k": 2}})
    with pytest.raises(ValueError, match="keep negative_candidates.freeform only"):
        PipelineConfig.model_validate({"negatives_freeform": {"m": 1}, "negative_candidates": {"freeform": {"m": 2}}})


def test_a_question_the_generator_asks_twice_is_kept_once(pages, tmp_path):
    """The model's list of positives holds one question twice (`inspect` found it in the training set): the
    second is rejected as a duplicate, not kept and verified twice."""
    store, ids = pages
    question = {"query": "Which R package tests for structural change in linear regression models?",
                "answer": "strucchange"}  # fmt: skip
    off = {"enabled": False}
    with FakeOpenAIServer(text=json.dumps({"queries": [question, question]})) as server:
        config = _config(server, positives_verified=off, rephrased=off, negatives_verified=off,
                         negative_candidates={"freeform": off, "controlled": off, "rulebased": off})  # fmt: skip
        run_pipeline(store, config, tmp_path / "run", page_ids=ids[:1])
    run = RunDir(tmp_path / "run")
    (shard,) = run.shards("positives")
    kept = run.read_shard("positives", shard, QueryRecord)
    rejected = run.read_shard("positives", shard, Rejection, rejected=True)
    assert [r.text for r in kept] == [question["query"]]
    assert [r.reason for r in rejected] == ["filter duplicate_positive"]
