"""Training data made the way users make it: the pipeline, export, mine and mix on all the sample documents.

The positives and their negatives are the hand-labeled pairs of bench/data/verifier-pairs.jsonl (70
answerable questions on 35 pages of 35 documents, 140 unanswerable edits of them), given to a real
pipeline run (``positives.given``) whose LLM stages are off, so the run adds its rule-based negatives
(entity, number, year swaps) and no model is needed; ``mine`` adds BM25-mined negative pages and
``mix --recipe full`` mixes both kinds. Built once per session (~1 min: ingest of the 839 pages).
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from docrerank.pages import PageStore, ingest
from tests.helpers import ROOT, invoke_cli

LABELED = ROOT / "bench" / "data" / "verifier-pairs.jsonl"


@dataclass(frozen=True)
class TrainingSets:
    store: PageStore
    run: Path
    export: Path  # hf, one row a page (ColHNQue layout)
    export_jsonl: Path  # queries.jsonl, no page text
    mixture: Path  # hf, recipe full: mined pages and generated queries
    mixture_jsonl: Path
    pairs: Path  # sentence-transformers pairs.jsonl of the export


def _given(store: PageStore, path: Path) -> Path:
    pages = {(Path(p.source_path).name, p.page_index): p.page_id for p in store}
    by_page = defaultdict(list)
    for line in LABELED.read_text().splitlines():
        row = json.loads(line)
        by_page[pages[(Path(row["file"]).name, row["page_index"])]].append(row)
    with path.open("w") as out:
        for page_id, rows in by_page.items():
            negatives = [r["query"] for r in rows if not r["answerable"]]
            for row in rows:
                if row["answerable"]:
                    out.write(json.dumps({"page_id": page_id, "query": row["query"], "negatives": negatives}) + "\n")
    return path


def _cli(*args) -> None:
    result = invoke_cli(*map(str, args))
    assert result.exit_code == 0, (args, result.stdout, result.exception)


@pytest.fixture(scope="session")
def training_sets(tmp_path_factory) -> TrainingSets:
    from docrerank.samples import fetch_samples

    root = tmp_path_factory.mktemp("training-sets")
    ingest(fetch_samples(), root / "pages", show_progress=False)
    store = PageStore.open(root / "pages")
    config = {
        "positives": {"given": str(_given(store, root / "given.jsonl"))},
        "positive_verification": {"enabled": False},
        "rephrase": {"enabled": False},
        "negatives_freeform": {"enabled": False},
        "negatives_controlled": {"enabled": False},
        "negative_verification": {"enabled": False},
    }
    (root / "config.yaml").write_text(yaml.safe_dump(config))
    run = root / "run"
    _cli("generate", "--pages", root / "pages", "--run-dir", run, "--config", root / "config.yaml", "--no-progress")
    for fmt, name in (("hf", "export"), ("jsonl", "export-jsonl"), ("sentence-transformers", "pairs")):
        _cli("export", run, "--pages", root / "pages", "--out", root / name, "--format", fmt)
    _cli("mine", "--pages", root / "pages", "--queries", run, "--out", root / "mined")
    for fmt, name in (("hf", "mixture"), ("jsonl", "mixture-jsonl")):
        mix = ("mix", "--pages", root / "pages", "--run", run, "--mined", root / "mined", "--recipe", "full")
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
