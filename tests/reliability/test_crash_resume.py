"""Crash and resume: ``docrerank generate`` SIGKILLed at many points, then resumed, ends equal to a run that
was never interrupted, with no record lost or duplicated and no answered request sent again.

The kills land at different points of the run: at the arrival of the run's Nth request at the FAKE server
(the server's ``on_request`` hook sends the SIGKILL, so the point is exact), when a stage's file appears on
disk (polled, as a user's kill would land), and inside a shard's write (the command frozen at a chosen
rename by ``crashpoint.py``, then SIGKILLed from outside: the kept file renamed but not the rejected one,
both but not the marker, a temporary file not yet renamed, the shard plan half written, stats.json not
yet written). Each trial checks, against the uninterrupted reference run:

- every stage's kept and rejected records, as multisets: none lost, none duplicated, none extra;
- stats.json's per-stage counts;
- no shard file without its completion marker;
- no answer the response cache held at the kill is asked again (the resumed run's
  ``$DOCRERANK_REQUEST_LOG`` against the cache read right after the kill), and at the server: the bodies
  sent again are at most the requests in flight (<= max_concurrency, among the last ones sent), and the
  killed and resumed runs together sent exactly the reference's bodies.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest

from docrerank.pipeline.stages import STAGES
from tests.helpers import invoke_cli, tiny_llm
from tests.reliability.harness import (
    CONCURRENCY,
    COUNTS,
    cached_keys,
    generate_args,
    kill9,
    logged_keys,
    records_extra,
    records_lost,
    run_records,
    stage_counts,
    unfinished_shard_files,
    wait_for,
    write_config,
)

pytestmark = pytest.mark.timeout(300)


@dataclass(frozen=True)
class Kill:
    """Where a trial kills the run: ``request`` (at the arrival of the run's Nth request, N as a share of the
    reference's requests), ``file`` (when a path matching a glob appears), or ``write`` (frozen at the nth
    rename onto a path matching a regex, before or after it)."""

    kind: str
    share: float = 0.0
    pattern: str = ""
    nth: int = 1
    when: str = "before"

    def __str__(self) -> str:
        if self.kind == "request":
            return f"request-{self.share:.0%}"
        name = self.pattern.replace("/", "_").replace("\\", "").strip("$")
        return f"{self.kind}-{name}-{self.nth}-{self.when}"


TRIALS = [
    Kill("request", share=0.02),  # the first request of the first shard
    Kill("request", share=0.2),
    Kill("request", share=0.45),
    Kill("request", share=0.7),
    Kill("request", share=0.97),  # the last requests of the last shard
    Kill("file", pattern="stages/positives_verified/*.done"),
    Kill("file", pattern="stages/negative_candidates/*.jsonl", nth=2),  # the second shard's candidates
    Kill("write", pattern=r"stages/negative_candidates/shard-\w+\.jsonl$", nth=1, when="before"),  # a .tmp file
    Kill("write", pattern=r"stages/negatives_verified/shard-\w+\.jsonl$", nth=2, when="after"),  # kept, not rejected
    Kill("write", pattern=r"stages/selected/shard-\w+\.rejected\.jsonl$", nth=1, when="after"),  # no marker
    Kill("write", pattern=r"stages/positives/shard-\w+\.done$", nth=3, when="before"),
    Kill("write", pattern=r"shards/shard-\w+\.json$", nth=2, when="after"),  # the shard plan half written
    Kill("write", pattern=r"stats\.json$", nth=1, when="before"),  # every shard done, no stats yet
]


def _kill_run(reference, server, launcher, run: Path, kill: Kill, tmp_path: Path) -> list[str]:
    """Start ``generate`` on ``run``, SIGKILL it at ``kill``; returns the body keys it sent."""
    args = generate_args(reference.store, reference.config, run)
    start = server.log.requests
    signal_file = tmp_path / "frozen"
    crashpoint = [kill.pattern, kill.nth, kill.when, signal_file] if kill.kind == "write" else None
    process = launcher.start(args, crashpoint=crashpoint)
    try:
        if kill.kind == "request":
            target = start + max(1, round(kill.share * len(reference.request_keys)))
            server.on_request = lambda count, body: count == target and kill9(process)
            process.wait(120)
        elif kill.kind == "file":
            reached = wait_for(lambda: len(list(run.glob(kill.pattern))) >= kill.nth, process)
            assert reached, f"{kill.pattern} never appeared"
            kill9(process)
        else:
            assert wait_for(signal_file.exists, process), f"the crash point {kill} was never reached"
            kill9(process)
        returncode = process.wait(60)
    finally:
        server.on_request = None
        kill9(process)
        process.wait(60)
    _, stderr = process.communicate()
    assert returncode == -9, f"the run ended ({returncode}) before the kill at {kill}: {stderr.decode()[-2000:]}"
    time.sleep(0.05)  # the server logs what was already on the wire
    return server.log.keys[start:]


def _resume_and_check(reference, server, run: Path, killed_keys: list[str], monkeypatch, tmp_path: Path) -> dict:
    at_kill = cached_keys(run)
    partial = unfinished_shard_files(run) + [str(p) for p in run.glob("stages/*/.shard-*.tmp")]
    log = tmp_path / f"requests-{len(list(tmp_path.glob('requests-*')))}.log"
    monkeypatch.setenv("DOCRERANK_REQUEST_LOG", str(log))
    start = server.log.requests
    result = invoke_cli(*generate_args(reference.store, reference.config, run))
    monkeypatch.delenv("DOCRERANK_REQUEST_LOG")
    assert result.exit_code == 0, (result.stdout, result.exception)
    resumed_keys = server.log.keys[start:]

    records = run_records(run)
    lost, extra = records_lost(reference.records, records), records_extra(reference.records, records)
    assert (lost, extra) == (0, 0), f"{lost} records lost, {extra} duplicated or extra"
    for stage in STAGES:
        assert records.kept[stage] == reference.records.kept[stage], stage
        assert records.rejected[stage] == reference.records.rejected[stage], stage
    assert stage_counts(run) == reference.stages
    assert unfinished_shard_files(run) == []

    asked_again = set(logged_keys(log)) & at_kill
    assert not asked_again, f"{len(asked_again)} answers the cache held at the kill were asked again"
    resent = set(killed_keys) & set(resumed_keys)
    assert len(resent) <= CONCURRENCY, f"{len(resent)} bodies sent again; at most {CONCURRENCY} were in flight"
    assert resent <= set(killed_keys[-2 * CONCURRENCY :]), "a body answered long before the kill was sent again"
    assert max(Counter(resumed_keys).values(), default=1) == 1
    assert set(killed_keys) | set(resumed_keys) == set(reference.request_keys)
    return {"lost": lost + extra, "resent": len(resent), "partial": len(partial), "cached": len(at_kill)}


def _count(outcome: dict, kill: Kill) -> None:
    COUNTS["crash trials (fake server, SIGKILL)"] += 1
    COUNTS["records lost or duplicated after resume"] += outcome["lost"]
    COUNTS["in-flight requests sent again after a kill"] += outcome["resent"]
    COUNTS["kills that left a shard half-written (files without marker, temp files)"] += outcome["partial"] > 0


@pytest.mark.slow
@pytest.mark.parametrize("kill", TRIALS, ids=str)
def test_a_killed_generate_resumes_to_the_uninterrupted_output(
    kill, reference, fake_server, launcher, tmp_path, monkeypatch
):
    run = tmp_path / "run"
    killed_keys = _kill_run(reference, fake_server, launcher, run, kill, tmp_path)
    if kill.kind == "request":
        assert killed_keys, "the kill came before any request"
    if kill.kind == "write" and kill.pattern.startswith("stages/"):
        half = unfinished_shard_files(run) + list(run.glob("stages/*/.shard-*.tmp"))
        assert half, "the kill did not land inside a shard's write"
    outcome = _resume_and_check(reference, fake_server, run, killed_keys, monkeypatch, tmp_path)
    _count(outcome, kill)


@pytest.mark.slow
def test_a_run_killed_twice_resumes_to_the_uninterrupted_output(
    reference, fake_server, launcher, tmp_path, monkeypatch
):
    """Killed at 30% of its requests, its resumption killed again at its own 20th request, then resumed."""
    run = tmp_path / "run"
    first = _kill_run(reference, fake_server, launcher, run, Kill("request", share=0.3), tmp_path)
    share = 20 / len(reference.request_keys)
    second = _kill_run(reference, fake_server, launcher, run, Kill("request", share=share), tmp_path)
    assert len(set(first) & set(second)) <= CONCURRENCY
    outcome = _resume_and_check(reference, fake_server, run, first + second, monkeypatch, tmp_path)
    _count(outcome, Kill("request"))


# -- the real model ----------------------------------------------------------------------------------------

TINY = tiny_llm()
GIVEN = {  # page index in the vignette -> a question the page answers, with values the rule-based edits change
    1: "Which error correction model from Hansen (1992b) is used for the consumption function in 1985?",
    2: "At which observation was the structural break of December 1991 detected?",
}


def _tiny_config(given: Path) -> dict:
    """SmolLM2-135M verifying rule-based negatives of given positives on two one-page shards: 8 requests.

    Its verification answers (logits, no sampling) are what this trial resumes; generation with the JSON
    grammar costs ~10 s a request on a busy 2-core machine, so the generated stages are left to the FAKE
    server's trials (the resume path is the same for both operations: the cache, the markers)."""
    return {
        "pages_per_shard": 1,
        "max_page_chars": 300,
        "backends": {"generator": TINY, "verifier": TINY},
        "positives": {"given": str(given)},
        "rephrased": {"enabled": False},
        "negative_candidates": {
            "freeform": {"enabled": False},
            "controlled": {"enabled": False},
            "rulebased": {"m": 2},
        },
        "negatives_verified": {"threshold": 0.99},
        "selected": {"k": 2},
    }


@pytest.mark.slow
def test_a_killed_generate_on_the_real_smollm2_bundle_resumes_to_the_uninterrupted_output(
    vignette_store, launcher, tmp_path, monkeypatch
):
    """The embedded llama.cpp backend (SmolLM2-135M bundle): killed after its 3rd answered request (inside the
    first shard's negative verification), resumed; equal to an uninterrupted run, no cached answer asked
    again."""
    pytest.importorskip("llama_cpp", reason='needs the llamacpp extra: pip install "docrerank[llamacpp]"')
    pages = {p.page_index: p.page_id for p in vignette_store}
    given = tmp_path / "given.jsonl"
    given.write_text("".join(json.dumps({"page_id": pages[i], "query": q}) + "\n" for i, q in GIVEN.items()))
    config = write_config(tmp_path / "config.yaml", _tiny_config(given))
    result = invoke_cli(*generate_args(vignette_store.root, config, tmp_path / "reference"))
    assert result.exit_code == 0, (result.stdout, result.exception)
    reference = run_records(tmp_path / "reference")
    assert sum(reference.kept["negatives_verified"].values()) > len(GIVEN)

    run = tmp_path / "run"
    log = tmp_path / "requests.log"
    args = generate_args(vignette_store.root, config, run)
    process = launcher.start(args, env={"DOCRERANK_REQUEST_LOG": str(log)})
    try:
        assert wait_for(lambda: len(logged_keys(log)) >= 3, process, timeout=240, step=0.02)
    finally:
        kill9(process)
        process.wait(60)
    assert process.returncode == -9, "the run finished before the kill"
    at_kill = cached_keys(run)
    assert at_kill and not (run / "stats.json").exists()

    resumed_log = tmp_path / "resumed.log"
    monkeypatch.setenv("DOCRERANK_REQUEST_LOG", str(resumed_log))
    result = invoke_cli(*args)
    assert result.exit_code == 0, (result.stdout, result.exception)
    records = run_records(run)
    lost, extra = records_lost(reference, records), records_extra(reference, records)
    assert (lost, extra) == (0, 0)
    assert not set(logged_keys(resumed_log)) & at_kill, "an answer cached before the kill was asked again"
    answered = Counter(logged_keys(log) + logged_keys(resumed_log))
    assert max(answered.values()) <= 2 and sum(n == 2 for n in answered.values()) <= 1  # one request in flight
    COUNTS["crash trials (real SmolLM2 bundle, SIGKILL)"] += 1
    COUNTS["records lost or duplicated after resume"] += lost + extra
