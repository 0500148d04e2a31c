"""Faults: a run against a FAKE loopback server that fails ~20% of requests in mixed ways completes, records
every failure with its reason (marked ``failed`` in the rejected files, counted apart from real rejections
in stats.json), and a second run retries exactly those requests and ends equal to a run without faults.

The fault plan is bound to request bodies (a hash of the body picks ~20% of them and a fault kind), not to
arrival slots, so a fault follows its request across the client's retries; it is switched off for the
second run, as a server that recovers. HTTP-level faults are transient for a third of the faulted bodies
(the client's retry recovers them inside the run) and persistent for the rest; empty and cut-off content
comes with HTTP 200, which the client does not retry, so those fail at once. They are faults of verifier
requests only: to a generation request, empty or cut-off JSON is the model's answer (cached, and a rejection
that keeps the raw text, as for a model that stops at max_tokens), not a failure to retry.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from docrerank.pipeline.records import Rejection
from docrerank.pipeline.stages import STAGES
from docrerank.testing.fake_server import FakeOpenAIServer, body_key
from tests.helpers import invoke_cli
from tests.reliability.harness import (
    COUNTS,
    fake_backend,
    fake_pipeline_config,
    generate_args,
    records_extra,
    records_lost,
    run_records,
    write_config,
)

pytestmark = pytest.mark.timeout(300)

MIX = ("429:1", "500", "hang", "drop", "malformed", "empty", "truncated")
SHARE = 0.2
# what each fault kind leaves in the recorded reason (a generation's reason, or a verifier's error)
SIGNATURES = {
    "429:1": ("HTTP 429",),
    "500": ("HTTP 500",),
    "hang": ("timed out",),
    "drop": ("connection error",),
    "malformed": ("not JSON",),
    "empty": ("no JSON object found", "no top_logprobs"),
    "truncated": ("unterminated JSON", "no top_logprobs"),
}


class FaultPlan:
    """~20% of request bodies fail, in the kinds of ``MIX``, while ``active``."""

    def __init__(self) -> None:
        self.active = True
        self.injected: Counter[str] = Counter()
        self.kinds: dict[str, str] = {}  # body key -> its fault kind, dealt in turn on first sight

    def fault_of(self, body: dict) -> tuple[str, bool] | None:
        """The fault kind of a body and whether it persists across retries, or None."""
        key = body_key(body)
        digest = int(key, 16)
        if digest % 1000 >= SHARE * 1000:
            return None
        # a generation's unusable answer is a rejection, not a failure (module docstring): HTTP-level faults only
        kinds = MIX if body.get("logprobs") else MIX[:5]
        if key not in self.kinds:
            self.kinds[key] = kinds[sum(k in kinds for k in self.kinds.values()) % len(kinds)]
        return self.kinds[key], (digest // 7000) % 3 != 0

    def __call__(self, body: dict, seen: int) -> str:
        fault = self.fault_of(body) if self.active else None
        if fault is None or (seen > 0 and not fault[1]):
            return "ok"
        self.injected[fault[0]] += 1
        return fault[0]


def _rejections(run: Path) -> list[Rejection]:
    return [
        Rejection.model_validate_json(line)
        for path in sorted((run / "stages").glob("*/shard-*.rejected.jsonl"))
        for line in path.read_text().splitlines()
        if line.strip()
    ]


def _failure_text(rejection: Rejection) -> str:
    errors = rejection.record.verdict.errors if rejection.record and rejection.record.verdict else []
    return " | ".join([rejection.reason, *errors])


@pytest.mark.slow
def test_a_run_against_a_failing_server_records_every_failure_and_a_rerun_retries_exactly_those(reference, tmp_path):
    plan = FaultPlan()
    with FakeOpenAIServer(answer_schemas=True, plan=plan, hang_s=3) as server:
        backend = fake_backend(server, max_retries=1, timeout_s=2, backoff_base_s=0.01, backoff_max_s=0.05)
        config = write_config(tmp_path / "config.yaml", fake_pipeline_config(backend))
        run = tmp_path / "run"
        first = invoke_cli(*generate_args(reference.store, config, run))
        assert first.exit_code in (0, 1), (first.stdout, first.exception)
        first_keys, first_actions = list(server.log.keys), list(server.log.actions)
        first_stats = json.loads((run / "stats.json").read_text())
        first_rejections = _rejections(run)

        plan.active = False  # the server recovers
        second = invoke_cli(*generate_args(reference.store, config, run))
        assert second.exit_code == 0, (second.stdout, second.exception)
        second_keys = server.log.keys[len(first_keys) :]

    # ~20% of the request bodies met a fault, of every kind of the mix
    faulted = {k for k, a in zip(first_keys, first_actions, strict=True) if a != "ok"}
    assert set(plan.injected) == set(MIX), plan.injected
    assert 0.1 <= len(faulted) / len(set(first_keys)) <= 0.35, (len(faulted), len(set(first_keys)))

    # a body failed when its last attempt in the first run failed (its retries, if any, ran out)
    last_action = dict(zip(first_keys, first_actions, strict=True))
    failed = {k for k, a in last_action.items() if a != "ok"}
    recovered = faulted - failed
    assert failed and recovered, "the mix should hold both failures and faults that the client's retry recovered"

    # every failure is recorded: marked failed, with a reason naming what happened, one request error each
    failures = [r for r in first_rejections if r.failed]
    assert failures and all(r.reason for r in failures)
    # a generation failure is one request; a verifier failure holds one error per failed prompt, and the same
    # (page, query) verified twice (two negatives with one text, or a later stage) is the same request
    generation = sum(1 for r in failures if not (r.record and r.record.verdict))
    verification = {
        (r.record.page_id, r.record.text): len(r.record.verdict.errors)
        for r in failures
        if r.record and r.record.verdict
    }
    errors = generation + sum(verification.values())
    assert errors == len(failed), f"{errors} request errors recorded for {len(failed)} failed requests"
    texts = " || ".join(_failure_text(r) for r in failures)
    for kind in {last_action[k] for k in failed}:
        assert any(s in texts for s in SIGNATURES[kind]), f"no recorded reason says {kind}: {texts[:3000]}"
    assert not any(_failure_text(r).startswith(("not ", "filter", "controlled edit")) for r in failures)

    # stats.json counts failures apart from real rejections, stage by stage
    for stage in STAGES:
        row = first_stats["stages"][stage]
        in_stage = [r for r in first_rejections if r.stage == stage]
        assert row["failed"] == sum(bool(r.failed) for r in in_stage), stage
        assert row["rejected"] == sum(not r.failed for r in in_stage), stage
        assert sum(row["failure_reasons"].values()) == row["failed"], stage
    assert sum(first_stats["stages"][s]["failed"] for s in STAGES) == len(failures)

    # the second run sent again only bodies that had failed, never one that had been answered, and every failed
    # one that the output needs; a failed one it skips is one a fault-free run never sends (its upstream,
    # retried, came out otherwise: e.g. a positive that failed verification is now kept instead of another)
    resent = set(second_keys) & set(first_keys)
    needed = failed & set(reference.request_keys)
    assert resent <= failed, f"{len(resent - failed)} answered requests were sent again"
    assert needed <= resent, f"{len(needed - resent)} failed requests were not retried"
    assert resent == needed
    assert max(Counter(second_keys).values()) == 1

    # after the retry the run equals one that met no fault
    records = run_records(run)
    assert (records_lost(reference.records, records), records_extra(reference.records, records)) == (0, 0)
    stats = json.loads((run / "stats.json").read_text())
    assert all(stats["stages"][s]["failed"] == 0 for s in STAGES)
    COUNTS["fault server: distinct requests"] += len(set(first_keys))
    COUNTS["fault server: requests that met a fault"] += len(faulted)
    COUNTS["faults injected (attempts answered with a fault)"] += sum(plan.injected.values())
    COUNTS["requests failed after retries"] += len(failed)
    COUNTS["failed requests retried by the rerun (the rest no longer needed)"] += len(resent)
    COUNTS["faults recovered by the client's own retries"] += len(recovered)
