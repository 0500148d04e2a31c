"""The Ray executor on a real two-node Ray cluster on this machine (``ray start --head`` and a second node).

The model is the FAKE loopback server (valid structured answers, yes/no log-probabilities): these tests are
about where shards run and what the run directory holds afterwards, not about what a model says. Each Ray
run is compared with the local executor's run of the same pages, config and seed.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

from docrerank.errors import DocrerankError
from docrerank.pages import PageStore, ingest
from docrerank.pipeline.config import PipelineConfig, RaySettings
from docrerank.pipeline.costs import Budget
from docrerank.pipeline.generate import run_pipeline
from docrerank.pipeline.ray_executor import RayExecutor, Segment, segments
from docrerank.pipeline.rundir import RunDir
from docrerank.pipeline.stages import STAGES
from docrerank.testing.fake_server import FakeOpenAIServer
from tests.helpers import PDF3, invoke_cli

ray = pytest.importorskip("ray")  # a dev dependency: skipped only where the extra is not installed

pytestmark = [pytest.mark.ray, pytest.mark.slow, pytest.mark.timeout(300)]

RAY = str(Path(sys.executable).parent / "ray")
# each node's object store at Ray's minimum: the tests move page ids and records, and the suite runs beside
OBJECT_STORE = str(80 * 1024 * 1024)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Cluster:
    address: str
    second_node: psutil.Process  # its raylet


@pytest.fixture(scope="module")
def cluster():
    """A head node and a second node process, one CPU each, this test process its driver."""
    # a loopback cluster that lives for this module: no token (Ray turns tokens on where ~/.ray/auth_token exists,
    # which a local ray.init writes, and then a second node started without one is refused)
    env = os.environ | {"RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled"}
    saved = os.environ.get("RAY_AUTH_MODE")
    os.environ["RAY_AUTH_MODE"] = "disabled"  # the driver, this process
    port, node_port = _free_port(), _free_port()
    common = ["--num-cpus", "1", "--object-store-memory", OBJECT_STORE, "--disable-usage-stats"]
    head = [RAY, "start", "--head", "--port", str(port), "--include-dashboard=false", *common]
    subprocess.run(head, check=True, env=env, capture_output=True)
    # the second node on another loopback address: the driver joins the head's raylet (the machine's address),
    # so killing the second node leaves the driver standing, as losing a worker machine would
    second = [RAY, "start", "--address", f"127.0.0.1:{port}", "--node-ip-address", "127.0.0.2"]
    second += ["--node-manager-port", str(node_port), *common]
    try:
        subprocess.run(second, check=True, env=env, capture_output=True)
        ray.init(address=f"127.0.0.1:{port}", log_to_driver=False, configure_logging=False)
        raylets = [
            p for p in psutil.process_iter(["cmdline"]) if f"--node_manager_port={node_port}" in p.info["cmdline"]
        ]
        assert len(ray.nodes()) == 2 and len(raylets) == 1
        yield Cluster(f"127.0.0.1:{port}", raylets[0])
    finally:
        ray.shutdown()
        subprocess.run([RAY, "stop", "--force"], env=env, capture_output=True)
        if saved is None:
            os.environ.pop("RAY_AUTH_MODE", None)
        else:
            os.environ["RAY_AUTH_MODE"] = saved


def _config(server: FakeOpenAIServer) -> PipelineConfig:
    backend = server.backend_config(max_concurrency=4)
    return PipelineConfig.model_validate(
        {
            "pages_per_shard": 1,
            "backends": {"generator": backend, "verifier": backend},
            "positives": {"n": 2},
            "negative_candidates": {"freeform": {"m": 2}, "controlled": {"properties": ["number"], "per_property": 1}},
        }
    )


@pytest.fixture(scope="module")
def pages(vignette_store):
    return vignette_store, [p.page_id for p in vignette_store if p.text.strip()]


@pytest.fixture(scope="module")
def reference(pages, tmp_path_factory) -> Path:
    """The local executor's run of every page: what each Ray run must equal."""
    store, ids = pages
    run = tmp_path_factory.mktemp("local") / "run"
    with FakeOpenAIServer(answer_schemas=True) as server:
        run_pipeline(store, _config(server), run, page_ids=ids)
    return run


def _contents(run: Path) -> dict[str, str]:
    """Every stage's shard files (kept and rejected records, markers without their costs: seconds differ), by
    path inside the run directory."""
    folder = RunDir(run)
    files = {}
    for stage in STAGES:
        for shard in folder.shard_pages():
            for suffix in (".jsonl", ".rejected.jsonl", ".done"):
                path = folder.stage_dir(stage) / f"{shard}{suffix}"
                text = path.read_text()
                if suffix == ".done":
                    marker = json.loads(text)
                    assert "cost" in marker, path  # every finished stage says what it cost
                    text = json.dumps(marker | {"cost": None})
                files[f"{stage}/{shard}{suffix}"] = text
    return files


def test_the_ray_executor_writes_what_the_local_one_writes(cluster, pages, reference, tmp_path):
    store, ids = pages
    events = []
    with FakeOpenAIServer(answer_schemas=True) as server:
        report = run_pipeline(
            store,
            _config(server),
            tmp_path / "run",
            page_ids=ids,
            executor=RayExecutor(),
            on_progress=lambda *e: events.append(e),
        )
    assert (report.shards, report.shards_resumed, report.failed) == (3, 0, 0)
    assert _contents(tmp_path / "run") == _contents(reference)
    assert [done for stage, done, _ in events if stage == "selected"] == [0, 1, 2, 3]
    assert report.profile["positives"]["requests_sent"] == 3  # the actors' costs come back with their shards


def test_the_stages_cut_where_a_stage_has_a_pool_of_its_own():
    names = ["a", "b", "c", "d", "e"]
    assert segments(names, set()) == [Segment("", 0, 5)]
    assert segments(names, {"c", "d"}) == [Segment("", 0, 2), Segment("c", 2, 3), Segment("d", 3, 4), Segment("", 4, 5)]


def test_a_stage_with_a_pool_of_its_own_writes_what_the_local_executor_writes(cluster, pages, reference, tmp_path):
    """Verification on a pool of its own (one actor, one CPU), the other stages on the executor's (one actor):
    each shard moves from pool to pool; progress comes per segment; the files are the local run's."""
    store, ids = pages
    events = []
    with FakeOpenAIServer(answer_schemas=True) as server:
        config = _config(server).model_copy(update={"ray": RaySettings(stages={"negatives_verified": {"workers": 1}})})
        report = run_pipeline(
            store, config, tmp_path / "run", page_ids=ids, executor=RayExecutor(workers=1),
            on_progress=lambda *e: events.append(e),
        )  # fmt: skip
        too_big = config.model_copy(update={"ray": RaySettings(stages={"negatives_verified": {"workers": 2}})})
        with pytest.raises(DocrerankError, match=r"the Ray pools need 3 CPU at once and the cluster has 2"):
            run_pipeline(store, too_big, tmp_path / "other", page_ids=ids, executor=RayExecutor(workers=1))
        wrong = config.model_copy(update={"ray": RaySettings(stages={"verification": {}})})
        with pytest.raises(DocrerankError, match="ray.stages names verification, not a stage"):
            run_pipeline(store, wrong, tmp_path / "other", page_ids=ids, executor=RayExecutor())
    assert (report.shards, report.shards_resumed, report.failed) == (3, 0, 0)
    assert _contents(tmp_path / "run") == _contents(reference)
    assert all([done for stage, done, _ in events if stage == name] == [0, 1, 2, 3] for name in STAGES)
    assert report.profile["negatives_verified"]["requests_sent"] > 0  # its pool's costs come back too


def test_generate_runs_on_the_cluster_it_is_given(cluster, pages, reference, tmp_path):
    store, ids = pages
    with FakeOpenAIServer(answer_schemas=True) as server:
        config = tmp_path / "config.yaml"
        config.write_text(_config(server).to_yaml())
        args = ["generate", "--pages", store.root, "--run-dir", tmp_path / "run", "--no-progress"]
        wrong = invoke_cli(*args, "--config", config, "--address", cluster.address)
        result = invoke_cli(*args, "--config", config, "--executor", "ray", "--address", cluster.address)
    assert "--address: options of --executor ray" in str(wrong.exception)  # exit 2 by the app
    assert result.exit_code == 0, result.stdout
    assert _contents(tmp_path / "run") == _contents(reference)


def test_ingest_on_ray_stores_what_the_local_pool_stores(cluster, tmp_path):
    ingest([PDF3], tmp_path / "local", workers=1)
    result = invoke_cli(
        "ingest", PDF3, "--out", tmp_path / "ray", "--executor", "ray", "--address", cluster.address, "--no-progress"
    )
    assert result.exit_code == 0, result.stdout
    local, on_ray = PageStore.open(tmp_path / "local"), PageStore.open(tmp_path / "ray")
    assert len(on_ray) == len(local) == 3
    for page in local:
        other = on_ray.get(page.page_id)
        assert (other.text, other.page_index, other.text_source) == (page.text, page.page_index, page.text_source)
        assert on_ray.image_path(other).read_bytes() == local.image_path(page).read_bytes()


def test_verify_on_ray_gives_what_it_gives_here(cluster, pages, tmp_path):
    store, ids = pages
    pairs = tmp_path / "pairs.jsonl"
    questions = ["What does the test detect?", "Which year is the break?", "Who wrote the package?"]
    pairs.write_text("".join(json.dumps({"page_id": pid, "query": q}) + "\n" for pid in ids for q in questions))
    with FakeOpenAIServer(answer_schemas=True) as server:
        config = tmp_path / "config.yaml"
        config.write_text(_config(server).to_yaml())
        args = ["verify", "--pages", store.root, "--pairs", pairs, "--config", config, "--no-progress"]
        here = invoke_cli(*args, "--out", tmp_path / "here.jsonl")
        sent = server.log.requests
        there = invoke_cli(*args, "--out", tmp_path / "there.jsonl", "--executor", "ray", "--address", cluster.address)
        assert server.log.requests == 2 * sent  # asked again: each run has its own cache
    assert here.exit_code == there.exit_code == 0, there.stdout
    lines = (tmp_path / "here.jsonl").read_text().splitlines()
    assert len(lines) == 9 and (tmp_path / "there.jsonl").read_text().splitlines() == lines


def test_mine_verify_on_ray_gives_what_it_gives_here(cluster, pages, tmp_path):
    store, ids = pages
    queries = tmp_path / "queries.jsonl"  # each page's first words as its query: BM25 ranks the other pages after it
    lines = [
        {"query_id": f"q{i}", "query": " ".join(store.get(pid).text.split()[:12]), "page_id": pid}
        for i, pid in enumerate(ids)
    ]
    queries.write_text("".join(json.dumps(line) + "\n" for line in lines))
    with FakeOpenAIServer(answer_schemas=True) as server:
        config = tmp_path / "config.yaml"
        config.write_text(_config(server).to_yaml())
        args = ["mine", "--pages", store.root, "--queries", queries, "--k", "3", "--max-score-ratio", "0"]
        args += ["--verify", "--config", config]
        here = invoke_cli(*args, "--out", tmp_path / "here")
        there = invoke_cli(*args, "--out", tmp_path / "there", "--executor", "ray", "--address", cluster.address)
    assert here.exit_code == there.exit_code == 0, there.stdout
    mined = (tmp_path / "here" / "mined.jsonl").read_text()
    assert '"verdict"' in mined and (tmp_path / "there" / "mined.jsonl").read_text() == mined


def test_label_on_ray_gives_what_it_gives_here(cluster, pages, tmp_path):
    """The teacher's chunks of pairs scored on the cluster's actors: the same labeled set as here, and a rerun
    on Ray answered from the cache the driver wrote."""
    store, ids = pages
    pairs = tmp_path / "pairs.jsonl"
    questions = ["What does the test detect?", "Which year is the break?", "Who wrote the package?"]
    rows = [
        {"query": q, "text": store.get(pid).text, "label": int(q == questions[0])} for pid in ids for q in questions
    ]
    pairs.write_text("".join(json.dumps(row) + "\n" for row in rows))
    with FakeOpenAIServer(answer_schemas=True) as server:
        config = tmp_path / "config.yaml"
        config.write_text(_config(server).to_yaml())
        args = ["label", "--data", pairs, "--teacher", config, "--chunk", "2", "--no-progress"]
        here = invoke_cli(*args, "--out", tmp_path / "here")
        sent = server.log.requests
        ray_args = [*args, "--out", tmp_path / "there", "--executor", "ray", "--address", cluster.address]
        there = invoke_cli(*ray_args)
        assert server.log.requests == 2 * sent == 2 * len(rows)  # each pair once per run (each its own cache)
        again = invoke_cli(*ray_args)
        assert server.log.requests == 2 * sent, "a finished labeling asked again"
    assert here.exit_code == there.exit_code == again.exit_code == 0, there.stdout
    assert f"{len(rows)} cached, 0 scored" in again.stdout
    labeled = (tmp_path / "here" / "examples.jsonl").read_text()
    assert '"teacher_score": 0.' in labeled and (tmp_path / "there" / "examples.jsonl").read_text() == labeled


def test_a_run_begun_on_one_executor_resumes_on_the_other(cluster, pages, reference, tmp_path):
    store, ids = pages
    run = tmp_path / "run"
    with FakeOpenAIServer(answer_schemas=True) as server:
        run_pipeline(store, _config(server), run, page_ids=ids[:1])
        on_ray = run_pipeline(store, _config(server), run, page_ids=ids[:2], executor=RayExecutor())
        back_home = run_pipeline(store, _config(server), run, page_ids=ids)
        sent = server.log.requests
        again = run_pipeline(store, _config(server), run, page_ids=ids, executor=RayExecutor())
        assert server.log.requests == sent, "a finished run asked again"
    assert (on_ray.shards, on_ray.shards_resumed) == (2, 1)
    assert (back_home.shards, back_home.shards_resumed) == (3, 2)
    assert again.shards_resumed == 3
    assert _contents(run) == _contents(reference)


def test_a_driver_stopped_mid_run_resumes(cluster, pages, reference, tmp_path):
    store, ids = pages
    run = tmp_path / "run"

    def stop_after_first_shard(stage: str, done: int, total: int) -> None:
        if stage == "selected" and done == 1:
            raise KeyboardInterrupt

    with FakeOpenAIServer(answer_schemas=True) as server:
        with pytest.raises(KeyboardInterrupt):
            run_pipeline(
                store,
                _config(server),
                run,
                page_ids=ids,
                executor=RayExecutor(workers=1),
                on_progress=stop_after_first_shard,
            )
        resumed = run_pipeline(store, _config(server), run, page_ids=ids, executor=RayExecutor())
    assert resumed.shards_resumed >= 1
    assert _contents(run) == _contents(reference)


def test_a_budget_stops_the_ray_executor_at_a_shard_boundary(cluster, pages, reference, tmp_path):
    store, ids = pages
    run = tmp_path / "run"
    with FakeOpenAIServer(answer_schemas=True) as server:
        stopped = run_pipeline(store, _config(server), run, page_ids=ids, executor=RayExecutor(workers=1),
                               budget=Budget(tokens=1))  # fmt: skip
        assert stopped.budget_stop and "2 of 3 shards left" in stopped.budget_stop
        assert len(RunDir(run).shards("selected")) == 1
        run_pipeline(store, _config(server), run, page_ids=ids, executor=RayExecutor())
    assert _contents(run) == _contents(reference)


def test_a_worker_node_killed_mid_run_loses_nothing(cluster, pages, reference, tmp_path):
    """The second node dies (its raylet and its workers, SIGKILL) while its actor is inside a shard; the shard
    goes to a new actor on the head node, which resumes it, and the run ends as the local one does."""
    store, ids = pages
    killed = threading.Event()

    def kill_the_second_node(count: int, body: dict) -> None:
        if count == 12 and not killed.is_set():  # a few requests into the run: both actors are inside a shard
            for process in [cluster.second_node, *cluster.second_node.children(recursive=True)]:
                try:
                    process.send_signal(signal.SIGKILL)
                except psutil.NoSuchProcess:
                    pass
            killed.set()

    with FakeOpenAIServer(answer_schemas=True, latency_s=0.05, on_request=kill_the_second_node) as server:
        executor = RayExecutor(workers=2)
        report = run_pipeline(store, _config(server), tmp_path / "run", page_ids=ids, executor=executor)
    assert killed.is_set() and executor.actors_lost == 1
    assert report.failed == 0
    assert _contents(tmp_path / "run") == _contents(reference)
