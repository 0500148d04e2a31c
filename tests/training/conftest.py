"""Training data made the way users make it: the pipeline, export, mine and mix on all the sample documents.

The positives and their negatives are the hand-labeled pairs of bench/data/verifier-pairs.jsonl (70
answerable questions on 35 pages of 35 documents, 140 unanswerable edits of them), given to a real
pipeline run (bench/data/labeled-run.yaml: ``positives.given``) whose LLM stages are off, so the run adds
its rule-based negatives (entity, number, year swaps) and no model is needed; ``mine`` adds BM25-mined negative pages
and ``mix --recipe full`` mixes both kinds. Built once per session (~1 min: ingest of the 839 pages).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from docrerank.pages import PageStore
from tests.helpers import ROOT, invoke_cli

LABELED_RUN = ROOT / "bench" / "data" / "labeled-run.yaml"


@dataclass(frozen=True)
class TrainingSets:
    store: PageStore
    run: Path
    export: Path  # hf, one row a page (ColHNQue layout)
    export_jsonl: Path  # queries.jsonl, no page text
    mixture: Path  # hf, recipe full: mined pages and generated queries
    mixture_jsonl: Path
    pairs: Path  # sentence-transformers pairs.jsonl of the export


def _cli(*args) -> None:
    result = invoke_cli(*map(str, args))
    assert result.exit_code == 0, (args, result.stdout, result.exception)


@pytest.fixture(scope="session")
def training_sets(all_sample_pages, tmp_path_factory) -> TrainingSets:
    root = tmp_path_factory.mktemp("training-sets")
    store = all_sample_pages
    config = yaml.safe_load(LABELED_RUN.read_text())
    config["positives"]["given"] = str(ROOT / config["positives"]["given"])  # the file names it from the repo root
    (root / "config.yaml").write_text(yaml.safe_dump(config))
    run = root / "run"
    _cli("generate", "--pages", store.root, "--run-dir", run, "--config", root / "config.yaml", "--no-progress")
    for fmt, name in (("hf", "export"), ("jsonl", "export-jsonl"), ("sentence-transformers", "pairs")):
        _cli("export", run, "--pages", store.root, "--out", root / name, "--format", fmt)
    _cli("mine", "--pages", store.root, "--queries", run, "--out", root / "mined")
    for fmt, name in (("hf", "mixture"), ("jsonl", "mixture-jsonl")):
        mix = ("mix", "--pages", store.root, "--run-dir", run, "--mined", root / "mined", "--recipe", "full")
        _cli(*mix, "--format", fmt, "--out", root / name)
    return TrainingSets(
        store=store,
        run=run,
        export=root / "export",
        export_jsonl=root / "export-jsonl" / "queries.jsonl",
        mixture=root / "mixture",
        mixture_jsonl=root / "mixture-jsonl" / "examples.jsonl",
        pairs=root / "pairs" / "pairs.jsonl",
    )
