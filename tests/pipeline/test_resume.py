"""What a rerun of a run directory may reuse: shards bound to their pages, failures asked again, one writer.

The model here is the FAKE loopback server (``answer_schemas``: valid structured answers, yes/no
log-probabilities): these tests are about which requests a run sends and which records it keeps, not about
what a model says. Faults are bound to request bodies (``plan``), so a fault follows its request into reruns.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter

import pytest
import yaml

from docrerank.errors import DocrerankError, SettingsMismatchError
from docrerank.pages import PageStore
from docrerank.pipeline.config import PipelineConfig
from docrerank.pipeline.export import read_selected
from docrerank.pipeline.generate import run_pipeline
from docrerank.pipeline.records import Rejection
from docrerank.pipeline.rundir import RunDir, RunLockedError
from docrerank.pipeline.stages import STAGES
from docrerank.testing.fake_server import FakeOpenAIServer, body_key
from tests.helpers import invoke_cli

pytestmark = pytest.mark.timeout(120)


def _config(server: FakeOpenAIServer, **settings) -> PipelineConfig:
    backend = server.backend_config(max_concurrency=4)
    return PipelineConfig.model_validate(
        {
            "pages_per_shard": 2,
            "backends": {"generator": backend, "verifier": backend},
            "positives": {"n": 2},
            "rephrased": {"fraction": 0.5},
            "negative_candidates": {"freeform": {"m": 2}, "controlled": {"enabled": False}},
            **settings,
        }
    )


@pytest.fixture(scope="module")
def pages(vignette_store) -> tuple[PageStore, list[str]]:
    ids = [p.page_id for p in vignette_store if p.text.strip()]
    assert len(ids) == 3
    return vignette_store, ids


def _final(run) -> set[tuple[str, str, str]]:
    return {(r.page_id, r.kind, r.text) for r in read_selected(run)}


def _sent(server: FakeOpenAIServer, since: int = 0) -> list[str]:
    return server.log.keys[since:]


def test_a_rerun_over_more_pages_runs_the_new_ones_and_reuses_the_done_shard(pages, tmp_path):
    store, ids = pages
    with FakeOpenAIServer(answer_schemas=True) as server:
        first = run_pipeline(store, _config(server), tmp_path / "run", page_ids=ids[:1])
        before = len(server.log.keys)
        second = run_pipeline(store, _config(server), tmp_path / "run", page_ids=ids)
        again = set(_sent(server, before)) & set(_sent(server)[:before])
        assert {page for page, _, _ in _final(tmp_path / "run")} == set(ids)
        # a smaller selection afterwards reuses what is there and loses nothing from stats or export
        before = len(server.log.keys)
        third = run_pipeline(store, _config(server), tmp_path / "run", page_ids=ids[2:])
        assert len(server.log.keys) == before
        run_pipeline(store, _config(server), tmp_path / "fresh", page_ids=ids)
    assert (first.shards, second.shards, second.shards_resumed) == (1, 2, 1)
    assert not again, "a page already done was asked about again"
    assert _final(tmp_path / "run") == _final(tmp_path / "fresh")  # same records as one run over all pages
    assert third.shards == third.shards_resumed == 1
    assert {page for page, _, _ in _final(tmp_path / "run")} == set(ids)


def test_shards_are_named_by_their_pages(pages, tmp_path):
    store, ids = pages
    with FakeOpenAIServer(answer_schemas=True) as server:
        run_pipeline(store, _config(server), tmp_path / "run", page_ids=ids)
    shard_pages = RunDir(tmp_path / "run").shard_pages()
    assert sorted(pid for group in shard_pages.values() for pid in group) == sorted(ids)
    for stage in STAGES:
        assert set(RunDir(tmp_path / "run").shards(stage)) == set(shard_pages)


def test_a_run_directory_of_the_positional_layout_is_refused_unless_forced(pages, tmp_path):
    store, ids = pages
    old = tmp_path / "run" / "stages" / "positives"
    old.mkdir(parents=True)
    (old / "shard-00000.jsonl").write_text("")
    (old / "shard-00000.done").write_text("")
    with FakeOpenAIServer(answer_schemas=True) as server:
        with pytest.raises(SettingsMismatchError, match="--force"):
            run_pipeline(store, _config(server), tmp_path / "run", page_ids=ids[:1])
        assert server.log.requests == 0
        run_pipeline(store, _config(server), tmp_path / "run", page_ids=ids[:1], force=True)
    assert not (old / "shard-00000.done").exists()
    assert {page for page, _, _ in _final(tmp_path / "run")} == set(ids[:1])


def _fails_once(share: float):
    """A plan that answers 500 the first time a body arrives, for a seeded ``share`` of the bodies."""

    def plan(body: dict, seen: int) -> str:
        unlucky = int(hashlib.sha256(body_key(body).encode()).hexdigest()[:4], 16) < share * 0x10000
        return "500" if unlucky and seen == 0 else "ok"

    return plan


def test_failed_requests_are_counted_apart_and_a_rerun_asks_exactly_them_again(pages, tmp_path):
    store, ids = pages
    run = tmp_path / "run"
    with FakeOpenAIServer(answer_schemas=True, plan=_fails_once(0.25)) as server:
        first = run_pipeline(store, _config(server), run, page_ids=ids)
        log = server.log
        failed = {k for k, a in zip(log.keys, log.actions, strict=True) if a != "ok"}
        stats = json.loads((run / "stats.json").read_text())["stages"]
        before = len(log.keys)
        reports = [run_pipeline(store, _config(server), run, page_ids=ids)]
        resent = set(log.keys[before:])
        # requests first sent by a rerun (after a failure upstream was answered) may fail once too
        while reports[-1].failed and len(reports) < 6:
            reports.append(run_pipeline(store, _config(server), run, page_ids=ids))
        settled = len(log.keys)
        run_pipeline(store, _config(server), run, page_ids=ids)
        assert len(log.keys) == settled, "a run with nothing failed sent requests"
        answered = Counter(k for k, a in zip(log.keys, log.actions, strict=True) if a == "ok")
        answered_twice = [k for k, n in answered.items() if n > 1]
        server.plan = None  # the same server (its address is part of the fingerprint), no faults
        run_pipeline(store, _config(server), tmp_path / "clean", page_ids=ids)
    assert failed and first.failed > 0
    assert sum(s["failed"] for s in stats.values()) == first.failed
    assert any("HTTP 500" in reason for s in stats.values() for reason in s["failure_reasons"])
    assert failed <= resent, "a failed request was not asked again by the next run"
    assert not answered_twice, "an answered request was sent again"
    assert reports[-1].failed == 0
    rejected = [
        r
        for stage in STAGES
        for shard in RunDir(run).shards(stage)
        for r in RunDir(run).read_shard(stage, shard, Rejection, rejected=True)
    ]
    assert not any(r.failed for r in rejected), "failures remained after the reruns"
    assert _final(run) == _final(tmp_path / "clean")


def test_an_empty_selection_is_an_error_not_the_whole_store(pages, tmp_path):
    store, _ = pages
    with FakeOpenAIServer(answer_schemas=True) as server:
        with pytest.raises(DocrerankError, match="no page was selected"):
            run_pipeline(store, _config(server), tmp_path / "run", page_ids=[])
        assert server.log.requests == 0


def test_a_second_writer_is_refused_and_changes_nothing(pages, tmp_path):
    store, ids = pages
    run = RunDir(tmp_path / "run")
    with FakeOpenAIServer(answer_schemas=True) as server:
        with run.writing(), pytest.raises(RunLockedError, match="another process"):
            run_pipeline(store, _config(server), run.root, page_ids=ids)
        assert server.log.requests == 0
        assert not (run.root / "stages").exists()
        run_pipeline(store, _config(server), run.root, page_ids=ids)  # free again


def test_generate_exits_1_while_requests_failed_and_0_once_a_rerun_got_them(pages, tmp_path):
    store, ids = pages
    with FakeOpenAIServer(answer_schemas=True, plan=lambda body, seen: "500") as server:
        config = tmp_path / "config.yaml"
        config.write_text(yaml.safe_dump(_config(server).model_dump(mode="json")))
        args = ["generate", "--pages", store.root, "--run-dir", tmp_path / "run", "--config", config, "--max-pages", 1]
        failing = invoke_cli(*args, "--no-progress")
        server.plan = None
        answered = invoke_cli(*args, "--no-progress")
    assert failing.exit_code == 1, failing.stdout
    assert "got no answer" in failing.stdout and "run the same command again" in failing.stdout
    assert answered.exit_code == 0, answered.stdout


def test_the_writer_clears_half_written_files_a_killed_run_left(pages, tmp_path):
    store, ids = pages
    leftover = tmp_path / "run" / "stages" / "positives" / ".shard-abc.jsonl.x1y2.tmp"
    leftover.parent.mkdir(parents=True)
    leftover.write_text('{"half": ')
    with FakeOpenAIServer(answer_schemas=True) as server:
        run_pipeline(store, _config(server), tmp_path / "run", page_ids=ids[:1])
    assert not leftover.exists()
