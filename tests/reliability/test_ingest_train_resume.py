"""Crash and resume beyond generation: ``docrerank ingest`` of a multi-page PDF SIGKILLed mid-way resumes to
the store an uninterrupted ingest makes; ``docrerank train`` of the CPU cross-encoder SIGKILLed after a
checkpoint exists resumes from that checkpoint and finishes the steps it was asked for."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from docrerank.rerankers import CrossEncoderReranker, Reranker
from tests.helpers import (
    docrerank_command,
    ingest_args,
    invoke_cli,
    make_pdf,
    report_number,
    run_cli,
    steel_pairs,
    text_page,
)
from tests.reliability.harness import COUNTS, files_under, kill9, wait_for

pytestmark = pytest.mark.timeout(600)

PAGES = 40  # 5 units of 8 pages: the kill lands after the first units, before the last


def _store_contents(store: Path) -> tuple[set[str], dict[str, bytes]]:
    """The store's page rows (as JSON, order-free) and its image files with their bytes."""
    rows = pd.read_parquet(store / "pages.parquet")
    pages = {json.dumps(row, sort_keys=True, default=str) for row in rows.to_dict(orient="records")}
    images = {str(p.relative_to(store)): p.read_bytes() for p in files_under(store / "images")}
    return pages, images


@pytest.mark.slow
def test_a_killed_ingest_of_a_multi_page_pdf_resumes_to_the_uninterrupted_store(tmp_path):
    pdf = make_pdf(tmp_path / "docs" / "long.pdf", [text_page(f"Report page {n}", lines=20) for n in range(PAGES)])
    options = ("--workers", "1", "--ocr", "never", "--dpi", "100")
    reference = tmp_path / "reference"
    result = invoke_cli(*ingest_args(pdf, out=reference, extra=options))
    assert result.exit_code == 0, (result.stdout, result.exception)

    store = tmp_path / "store"
    args = [str(a) for a in ingest_args(pdf, out=store, extra=options)]
    process = subprocess.Popen([*docrerank_command(), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    units = store / "units"
    try:
        reached = wait_for(lambda: len(list(units.glob("*.parquet"))) >= 2, process, timeout=180)
    finally:
        kill9(process)
        process.wait(60)
    assert reached and process.returncode == -9, "the ingest finished before the kill"
    done_at_kill = len(list(units.glob("*.parquet")))
    assert done_at_kill < PAGES // 8 and not (store / "pages.parquet").exists()

    resumed = run_cli(*args, timeout=300)
    assert resumed.exit_code == 0, resumed.stderr[-3000:]
    assert report_number(resumed.stdout, "pages already done (skipped)") >= 8 * done_at_kill
    pages, images = _store_contents(store)
    ref_pages, ref_images = _store_contents(reference)
    assert len(ref_pages) == PAGES
    assert pages == ref_pages, f"{len(ref_pages - pages)} pages lost, {len(pages - ref_pages)} extra"
    assert images == ref_images
    COUNTS["crash trials (ingest, SIGKILL)"] += 1
    COUNTS["records lost or duplicated after resume"] += len(ref_pages ^ pages)


@pytest.mark.slow
def test_a_killed_training_resumes_from_its_checkpoint(tmp_path):
    data = steel_pairs(tmp_path / "pairs.jsonl")
    out = tmp_path / "out"
    args = ["train", "--data", data, "--out", out, "--batch", "2", "--max-steps", "2", "--save-steps", "1"]
    args = [str(a) for a in [*args, "--held-out", "0"]]
    process = subprocess.Popen([*docrerank_command(), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    state = out / "checkpoints" / "checkpoint-1" / "trainer_state.json"
    try:
        reached = wait_for(state.exists, process, timeout=400, step=0.05)
    finally:
        kill9(process)
        process.wait(60)
    assert reached and process.returncode == -9, "no checkpoint-1 before the end: the kill came too late"
    assert not (out / "training.json").exists()
    kept = sorted(p.name for p in (out / "checkpoints").iterdir() if p.name.startswith("checkpoint-"))

    result = run_cli(*args, timeout=500)
    assert result.exit_code == 0, result.stderr[-3000:]
    summary = json.loads((out / "training.json").read_text())
    assert summary["resumed_from"] and Path(summary["resumed_from"]).name == kept[-1], (summary, kept)
    assert "resumed from" in result.stdout
    assert summary["steps"] == 2
    final = json.loads((out / "checkpoints" / "checkpoint-2" / "trainer_state.json").read_text())
    assert final["global_step"] == 2
    assert isinstance(Reranker.load(out), CrossEncoderReranker)
    COUNTS["crash trials (training, SIGKILL)"] += 1
