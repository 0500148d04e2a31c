"""Secrets: with the API key in the environment variable an ``openai`` backend names (``api_key_env``), no
file the run writes, no log line and no error message contains it.

The run goes through the CLI as a subprocess with debug logging (``-vv``), against a FAKE loopback server
that checks the key arrives (as a Bearer header) and fails some requests on purpose, so that error
messages and rejected records are written too; then ``stats`` and ``export`` read the run. Every file under
the run directory (the SQLite cache and its WAL included, read as bytes), the export, the request log and
every captured stdout/stderr are searched for the key, and for its base64 form.
"""

from __future__ import annotations

import base64
import secrets
from pathlib import Path

import pytest

from docrerank.testing.fake_server import FakeOpenAIServer, body_key
from tests.reliability.harness import (
    COUNTS,
    fake_backend,
    fake_pipeline_config,
    files_under,
    generate_args,
    write_config,
)

pytestmark = pytest.mark.timeout(300)

KEY_ENV = "DOCRERANK_RELIABILITY_API_KEY"


def _leaks(key: str, blobs: dict[str, bytes]) -> list[str]:
    forms = [key.encode(), base64.b64encode(key.encode()), base64.b64encode(f"Bearer {key}".encode())]
    return [name for name, blob in blobs.items() if any(form in blob for form in forms)]


def _run_with_key(reference, launcher, tmp_path: Path, plan) -> tuple[str, dict[str, bytes], FakeOpenAIServer]:
    key = "sk-reliability-" + secrets.token_hex(16)
    with FakeOpenAIServer(answer_schemas=True, plan=plan) as server:
        backend = fake_backend(server, api_key_env=KEY_ENV, max_retries=1, backoff_base_s=0.01, backoff_max_s=0.05)
        config = write_config(tmp_path / "config.yaml", fake_pipeline_config(backend))
        run, log = tmp_path / "run", tmp_path / "requests.log"
        env = {KEY_ENV: key, "DOCRERANK_REQUEST_LOG": str(log)}
        commands = {
            "generate": generate_args(reference.store, config, run),
            "rerun": generate_args(reference.store, config, run),
            "stats": ["stats", run, "--no-embeddings"],
            "export": ["export", run, "--pages", reference.store, "--out", tmp_path / "export", "--format", "jsonl"],
        }
        outputs = {name: launcher.run(["-vv", *args], env) for name, args in commands.items()}
        assert outputs["generate"][0] in (0, 1), outputs["generate"][2][-3000:]
    assert server.log.requests and all(h.get("authorization") == f"Bearer {key}" for h in server.log.headers)
    blobs = {str(p.relative_to(tmp_path)): p.read_bytes() for p in files_under(tmp_path)}
    for name, (_, out, err) in outputs.items():
        blobs[f"{name} stdout"], blobs[f"{name} stderr"] = out.encode(), err.encode()
    return key, blobs, server


def _some_faults(body: dict, seen: int) -> str:
    """A few requests fail (then recover on retry or rerun), so error text is written too."""
    digest = int(body_key(body), 16)
    return ("500", "drop", "malformed", "empty")[digest % 4] if digest % 10 == 0 and seen < 2 else "ok"


@pytest.mark.slow
def test_no_file_log_or_message_of_a_run_contains_the_api_key(reference, launcher, tmp_path):
    key, blobs, server = _run_with_key(reference, launcher, tmp_path, _some_faults)
    assert any(b"rejected" in name.encode() for name in blobs), "the run wrote no rejected records to search"
    assert any(a != "ok" for a in server.log.actions), "no fault happened: no error text was searched"
    leaks = _leaks(key, blobs)
    assert not leaks, f"the API key is in: {leaks}"
    COUNTS["files and outputs searched for the API key"] += len(blobs)
    COUNTS["API key leaks"] += len(leaks)


@pytest.mark.slow
def test_a_server_that_echoes_the_key_in_its_error_does_not_leak_it_into_the_run(reference, launcher, tmp_path):
    """A careless server or proxy answers 401 with the Authorization header in its message; the run records
    the failure (HTTP 401, its reason kept), but not the key."""

    def echo(body: dict, seen: int) -> str:
        return "echo-auth" if int(body_key(body), 16) % 4 == 0 else "ok"

    key, blobs, server = _run_with_key(reference, launcher, tmp_path, echo)
    assert "echo-auth" in server.log.actions
    assert any(b"HTTP 401" in blob for name, blob in blobs.items() if "rejected" in name), "the 401 is not recorded"
    leaks = _leaks(key, blobs)
    assert not leaks, f"the API key is in: {leaks}"
    COUNTS["files and outputs searched for the API key"] += len(blobs)
    COUNTS["API key leaks"] += len(leaks)
