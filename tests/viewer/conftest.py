"""A small run made without a model: the vignette's pages, given positives with given negatives, rule-based
negatives, the LLM stages off (as bench/data/labeled-run.yaml). Each test gets its own copy to correct."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from docrerank.pages import PageStore
from tests.helpers import invoke_cli

GIVEN = [
    (
        0,
        "Which R package implements tests for structural change in linear regression models?",
        [
            "Which R package implements tests for structural change in logistic regression models?",
            "Which Python package implements tests for structural change in linear regression models?",
        ],
    ),
    (
        1,
        "From which month and year does the USIncExp2 window start?",
        ["From which month and year does the USIncExp3 window start?"],
    ),
]


@pytest.fixture(scope="session")
def model_free_run(vignette_store: PageStore, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("viewer-run")
    pages = [p for p in vignette_store if p.text.strip()]
    given = root / "given.jsonl"
    lines = [{"page_id": pages[i].page_id, "query": q, "negatives": negatives} for i, q, negatives in GIVEN]
    given.write_text("".join(json.dumps(line) + "\n" for line in lines))
    config = {
        "positives": {"given": str(given)},
        "positives_verified": {"enabled": False},
        "rephrased": {"enabled": False},
        "negative_candidates": {
            "freeform": {"enabled": False},
            "controlled": {"enabled": False},
            "rulebased": {"m": 3},
        },
        "negatives_verified": {"enabled": False},
        "selected": {"k": 2},
    }
    (root / "config.yaml").write_text(yaml.safe_dump(config))
    args = ["generate", "--pages", vignette_store.root, "--run-dir", root / "run", "--config", root / "config.yaml"]
    result = invoke_cli(*args, "--no-progress")
    assert result.exit_code == 0, result.stdout
    return root / "run"


@pytest.fixture
def run_copy(model_free_run, tmp_path) -> Path:
    """The run copied, so a test's corrections stay its own."""
    return Path(shutil.copytree(model_free_run, tmp_path / "run"))
