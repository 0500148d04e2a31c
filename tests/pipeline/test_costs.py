"""What a run costs: each stage's requests, retries, tokens and seconds kept in its shards' markers, so a
resumed run's stats count every part; prices turn tokens into money; a budget stops a run at a shard boundary
and a rerun with a larger one goes on to the same output. The FAKE loopback server answers (7 prompt and 3
decoded tokens a request): these tests count, they do not judge a model."""

from __future__ import annotations

import json

import pytest

from docrerank.pipeline.config import PipelineConfig
from docrerank.pipeline.costs import Budget
from docrerank.pipeline.generate import run_pipeline
from docrerank.pipeline.records import QueryRecord
from docrerank.pipeline.rundir import RunDir
from docrerank.testing.fake_server import FakeOpenAIServer
from tests.helpers import invoke_cli

pytestmark = pytest.mark.timeout(120)


def _config(server: FakeOpenAIServer, **settings) -> PipelineConfig:
    backend = server.backend_config(max_concurrency=4)
    return PipelineConfig.model_validate(
        {
            "pages_per_shard": 1,
            "backends": {"generator": backend | {"max_retries": 2}, "verifier": backend},
            "positives": {"n": 2},
            "negative_candidates": {"freeform": {"m": 2}, "controlled": {"enabled": False}},
            **settings,
        }
    )


@pytest.fixture(scope="module")
def pages(vignette_store):
    return vignette_store, [p.page_id for p in vignette_store if p.text.strip()]


def _final(run) -> list[str]:
    folder = RunDir(run)
    return sorted(r.text for s in folder.shards("selected") for r in folder.read_shard("selected", s, QueryRecord))


def test_costs_are_kept_per_shard_and_summed_across_resumes_and_priced(pages, tmp_path):
    store, ids = pages
    run = tmp_path / "run"
    prices = {"generator": {"input_per_million": 1e6, "output_per_million": 2e6}}  # 1 a prompt token, 2 a decoded
    with FakeOpenAIServer(answer_schemas=True, script=["500", *["ok"] * 999]) as server:
        first = run_pipeline(store, _config(server, prices=prices), run, page_ids=ids[:1])
        second = run_pipeline(store, _config(server, prices=prices), run, page_ids=ids)
        sent = server.log.requests
    assert (first.shards, second.shards, second.shards_resumed) == (1, 3, 1)
    cost = json.loads((run / "stats.json").read_text())["cost"]
    total = cost["total"]
    assert total["requests_sent"] == sent - 1  # every request of both runs; the 500 was retried, not sent again
    assert total["retries"] == 1 and cost["stages"]["positives"]["retries"] == 1  # the 500 on the first request
    assert total["prompt_tokens"] == 7 * total["requests_sent"]  # choice scoring's prompts too
    assert total["tokens"] == total["prompt_tokens"] + total["completion_tokens"] > total["prompt_tokens"]
    generating = [s for s in ("positives", "rephrased", "negative_candidates") if s in cost["stages"]]
    money = sum(cost["stages"][s]["prompt_tokens"] + 2 * cost["stages"][s]["completion_tokens"] for s in generating)
    assert total["money"] == pytest.approx(money)  # the verifier has no price: it costs nothing
    assert cost["stages"]["positives"]["pages"] == 3 and cost["stages"]["positives"]["per_page"]["requests_sent"] == 1
    shown = invoke_cli("stats", run, "--no-embeddings")
    assert shown.exit_code == 0 and json.loads((run / "stats.json").read_text())["cost"] == cost
    assert "cost (every shard and attempt" in shown.stdout


def test_a_budget_stops_at_a_shard_boundary_and_a_larger_one_goes_on_to_the_same_output(pages, tmp_path):
    store, ids = pages
    with FakeOpenAIServer(answer_schemas=True) as server:
        reference = tmp_path / "reference"
        run_pipeline(store, _config(server), reference, page_ids=ids)
        per_shard = json.loads((reference / "stats.json").read_text())["cost"]["total"]["tokens"] / len(ids)
        run = tmp_path / "run"
        stopped = run_pipeline(store, _config(server), run, page_ids=ids, budget=Budget(tokens=per_shard / 2))
        assert stopped.budget_stop and "2 of 3 shards left" in stopped.budget_stop
        assert len(RunDir(run).shards("selected")) == 1
        config = tmp_path / "config.yaml"
        config.write_text(_config(server).to_yaml())
        args = ["generate", "--pages", store.root, "--run-dir", run, "--config", config, "--no-progress"]
        again = invoke_cli(*args, "--budget-tokens", 1)  # already spent: nothing more
        assert again.exit_code == 5 and "nothing was run" in again.stdout
        rest = invoke_cli(*args, "--budget-tokens", 10 * per_shard * len(ids))
        assert rest.exit_code == 0, rest.stdout
    assert _final(run) == _final(reference)


def test_estimate_projects_the_sample_runs_cost_per_page_over_the_store(pages, tmp_path):
    store, ids = pages
    with FakeOpenAIServer(answer_schemas=True) as server:
        config = tmp_path / "config.yaml"
        config.write_text(_config(server).to_yaml())
        args = ["estimate", "--pages", store.root, "--config", config, "--sample", 1, "--no-progress"]
        result = invoke_cli(*args, "--run-dir", tmp_path / "sample", "--out", tmp_path / "estimate.json")
        sample_requests = server.log.requests
        run_pipeline(store, _config(server), tmp_path / "sample", page_ids=ids)  # the real run reuses the sample
        whole_requests = server.log.requests
    assert result.exit_code == 0, result.stdout
    assert "the sample run: 1 pages" in result.stdout and f"projected for the store's {len(ids)} pages" in result.stdout
    estimate = json.loads((tmp_path / "estimate.json").read_text())
    projected = estimate["projected"]["all stages"]["requests_sent"]
    assert projected == pytest.approx(sample_requests * len(ids))
    actual = json.loads((tmp_path / "sample" / "stats.json").read_text())["cost"]["total"]["requests_sent"]
    assert actual == whole_requests  # the sample's shard was reused, its cost counted once
