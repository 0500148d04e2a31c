"""Training the CPU cross-encoder: better on held-out documents, the score it trains is the score it ranks by,
checkpoints resume after a kill, and data-parallel training runs as 2 CPU processes (gloo)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from docrerank.rerankers import CrossEncoderReranker, Reranker
from tests.helpers import docrerank_command, run_cli

pytestmark = pytest.mark.slow


def test_the_trained_score_is_the_ranking_score(training_sets):
    """margins (what the loss sees) and score (what rank uses) are the same best-chunk logit."""
    reranker = CrossEncoderReranker()
    reranker.model.eval()
    group = next(g for g in _groups(training_sets) if len(g.page.text.split()) > 200)  # several chunks
    pairs = [(query, page) for query, page, _ in group.pairs()]
    with torch.no_grad():
        margins = reranker.margins(pairs)
    assert torch.sigmoid(margins).tolist() == pytest.approx(reranker.score(pairs), abs=1e-5)


def _groups(training_sets):
    from docrerank.training import read_groups

    return read_groups(training_sets.export)


def _small_pairs(training_sets, path: Path, groups: int = 12) -> Path:
    lines, starts = [], 0
    for line in training_sets.pairs.read_text().splitlines():
        starts += json.loads(line)["label"] == 1
        if starts > groups:
            break
        lines.append(line)
    path.write_text("\n".join(lines) + "\n")
    return path


def test_a_killed_training_resumes_from_its_last_checkpoint(training_sets, tmp_path):
    data = _small_pairs(training_sets, tmp_path / "pairs.jsonl")
    out = tmp_path / "out"
    args = ["train", "--data", data, "--out", out, "--batch", "2", "--max-steps", "4", "--save-steps", "1"]
    args += ["--held-out", "0"]
    process = subprocess.Popen([*docrerank_command(), *map(str, args)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    state = out / "checkpoints" / "checkpoint-2" / "trainer_state.json"
    deadline = time.monotonic() + 600
    while not state.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert state.exists(), "no checkpoint was written before the kill"
    assert not (out / "training.json").exists()  # it was killed before the end
    result = run_cli(*args, timeout=900)
    assert result.exit_code == 0, result.stderr[-3000:]
    assert "resumed from" in result.stdout and "checkpoint-" in result.stdout
    summary = json.loads((out / "training.json").read_text())
    assert summary["steps"] == 4 and summary["resumed_from"].endswith(("checkpoint-2", "checkpoint-3"))
    assert isinstance(Reranker.load(out), CrossEncoderReranker)


def test_data_parallel_training_on_two_cpu_processes(training_sets, tmp_path):
    data = _small_pairs(training_sets, tmp_path / "pairs.jsonl", groups=8)
    out = tmp_path / "ddp"
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    args = ["train", "--data", data, "--out", out, "--batch", "2", "--max-steps", "2", "--held-out", "0"]
    result = subprocess.run(
        [*torchrun, "-m", "docrerank.cli.app", *map(str, args)], capture_output=True, text=True, timeout=900
    )
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((out / "training.json").read_text())
    assert summary["processes"] == 2 and summary["steps"] == 2
    assert result.stdout.count("trained cross-encoder") == 1  # the main process reports, the other does not
    reranker = Reranker.load(out)
    assert len(reranker.score([("a query", "a page text")])) == 1
