"""What the benchmarks share: the sample documents' page store (made when missing)."""

from __future__ import annotations

from pathlib import Path

from docrerank.pages import IngestSettings, PageStore, ingest
from docrerank.samples import default_cache_dir, fetch_samples

__all__ = ["sample_store"]


def sample_store(path: Path) -> PageStore:
    """The store of the pinned sample documents at ``path``, ingested first if it is not there."""
    if not (path / "pages.parquet").exists():
        ingest(fetch_samples(default_cache_dir()), path, IngestSettings())
    return PageStore.open(path)
