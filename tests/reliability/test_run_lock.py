"""One run directory, one writer: a second ``generate`` on a run directory that another process is writing
refuses at once with a clear message (exit code 2, naming the run directory), sends no request and
writes nothing; the first run finishes equal to an uninterrupted one. A writer that was SIGKILLed leaves
no lock behind that blocks the next run (the lock is the OS's, released with its process)."""

from __future__ import annotations

import pytest

from tests.reliability.harness import (
    COUNTS,
    generate_args,
    kill9,
    records_extra,
    records_lost,
    run_records,
    wait_for,
)

pytestmark = pytest.mark.timeout(300)


@pytest.mark.slow
def test_a_second_generate_on_a_run_being_written_refuses_and_corrupts_nothing(
    reference, fake_server, launcher, tmp_path
):
    run = tmp_path / "run"
    args = generate_args(reference.store, reference.config, run)
    start = fake_server.log.requests
    fake_server.latency_s = 0.1  # the first run takes a few seconds: time for the second to try
    first = launcher.start(args)
    try:
        assert wait_for(lambda: fake_server.log.requests > start + 3, first), "the first run never got going"
        code, _, stderr = launcher.run(args, timeout=120)
        first_running = first.poll() is None
        sent_by_both = fake_server.log.keys[start:]
        first.wait(180)
    finally:
        fake_server.latency_s = 0.01
        kill9(first)
        first.wait(60)
    assert first_running, "the first run ended before the second tried: slow it down"
    assert code == 2, (code, stderr)
    message = " ".join(stderr.split())
    assert "being written by another process" in message and str(run) in message.replace(" ", ""), message
    assert "Traceback" not in stderr
    assert len(sent_by_both) == len(set(sent_by_both)), "the refused run sent requests"

    _, stderr = first.communicate()
    assert first.returncode == 0, stderr.decode()[-3000:]
    records = run_records(run)
    assert (records_lost(reference.records, records), records_extra(reference.records, records)) == (0, 0)
    COUNTS["second writers refused"] += 1


@pytest.mark.slow
def test_a_killed_writer_leaves_no_lock_that_blocks_the_next_run(reference, fake_server, launcher, tmp_path):
    run = tmp_path / "run"
    args = generate_args(reference.store, reference.config, run)
    start = fake_server.log.requests
    process = launcher.start(args)
    try:
        assert wait_for(lambda: fake_server.log.requests > start + 5, process)
    finally:
        kill9(process)
        process.wait(60)
    assert (run / ".lock").exists()
    code, _, stderr = launcher.run(args, timeout=180)
    assert code == 0, stderr[-3000:]
    records = run_records(run)
    assert (records_lost(reference.records, records), records_extra(reference.records, records)) == (0, 0)
