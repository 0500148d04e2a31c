"""Fixtures of the pipeline tests: one real tiny generation run, made once per session."""

from __future__ import annotations

from pathlib import Path

import pytest

from docrerank.pipeline.config import PipelineConfig
from docrerank.pipeline.generate import run_pipeline


@pytest.fixture(scope="session")
def finished_run(vignette_store, tmp_path_factory) -> Path:
    """test_generate's run: SmolLM2 via llama.cpp over the vignette's 3 pages with ``_config()`` (~1.5 min on
    one core, nearly all of it prompt evaluation), made once per session. Tests that read a finished run share
    it; a test that changes a run works on a copy; a run of some of its pages with the same config can start
    from a copy of its response cache (``cache.sqlite``: the same requests, already answered)."""
    from tests.pipeline.test_generate import _config

    run = tmp_path_factory.mktemp("tiny-run") / "run"
    run_pipeline(vignette_store, PipelineConfig.model_validate(_config()), run)
    return run
