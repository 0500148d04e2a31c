"""Pipeline benchmarks: the orchestration against an ideal, and pages/hour on the embedded model.

1. Orchestration: every stage of the pipeline runs against the FAKE loopback server of bench/backends.py (a
   child process answering every request after a fixed 100 ms; requests with a JSON schema get a valid
   instance of it, so each stage parses real-looking output). The pipeline sends each stage's requests of a
   shard as one batch, so a perfect orchestrator needs ceil(sent / concurrency) x 100 ms per batch; the sum
   over the run's batches is the ideal time. Printed: achieved requests/s, ideal requests/s, and their
   ratio. Goal: >= 0.9. Everything else the pipeline does (filters, rule-based edits with the entity pool
   of the whole store, evidence checks, shard files) counts against it.
2. Embedded model: a full default run (all stages; the 1.5B for generation and verification, as shipped)
   on ``--embedded-pages`` pages spread over the documents: per page and stage, the seconds, requests and
   decoded tokens (the run's profile, stats.json), pages/hour, and what it made (verified positives and
   negatives per page). ``--compare`` first runs the settings before issue 22's speed work on the same pages.

Both run on the sample documents' page store (``make demo`` makes it; this script makes it if missing).

    python bench/pipeline.py                 # orchestration (~1 min) + 1 page on the 1.5B (~5-10 min)
    python bench/pipeline.py --quick         # orchestration on fewer pages + 1 page on the 0.5B, lighter settings
    python bench/pipeline.py --skip-embedded
    python bench/pipeline.py --skip-orchestration --embedded-pages 4 --compare   # speed and yield against before
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from common import sample_store  # bench/common.py: scripts run as `python bench/NAME.py`
from docrerank.backends.openai_http import OpenAIBackend
from docrerank.pages import PageStore
from docrerank.pages.sample import spread_sample
from docrerank.pipeline.config import PipelineConfig
from docrerank.pipeline.generate import run_pipeline
from docrerank.testing.fake_server import FakeOpenAIServer

LATENCY_S = 0.1


class BatchLog:
    """Requests sent per batch by the HTTP backend: the shape of the run, for its ideal time.

    Wraps ``generate`` and ``score_choices`` of the backend class (they still do all the work) and reads
    the backend's own sent-requests counter around each call.
    """

    def __init__(self) -> None:
        self.batches: list[int] = []
        self._saved = {}

    def __enter__(self) -> BatchLog:
        for name in ("generate", "score_choices"):
            original = getattr(OpenAIBackend, name)
            self._saved[name] = original

            def wrapped(backend, requests, _original=original):
                before = backend.stats.requests_sent
                result = _original(backend, requests)
                self.batches.append(backend.stats.requests_sent - before)
                return result

            setattr(OpenAIBackend, name, wrapped)
        return self

    def __exit__(self, *exc_info) -> None:
        for name, original in self._saved.items():
            setattr(OpenAIBackend, name, original)


def orchestration(store: PageStore, pages: int, concurrency: int, pages_per_shard: int) -> dict:
    page_ids = spread_sample(store, pages, seed=0)
    with FakeOpenAIServer(latency_s=LATENCY_S, separate_process=True, answer_schemas=True) as server:
        backend = server.backend_config(concurrency)
        config = PipelineConfig.model_validate(
            {
                "pages_per_shard": pages_per_shard,
                "backends": {"generator": backend, "verifier": backend},
                "positives": {"n": 3},
                "negative_candidates": {"freeform": {"m": 4}, "controlled": {"per_property": 1}},
            }
        )
        with tempfile.TemporaryDirectory() as run_dir, BatchLog() as log:
            started = time.perf_counter()
            run_pipeline(store, config, run_dir, page_ids=page_ids)
            elapsed = time.perf_counter() - started
            stats = json.loads((Path(run_dir) / "stats.json").read_text())
    sent = sum(log.batches)
    ideal_s = sum(math.ceil(n / concurrency) * LATENCY_S for n in log.batches if n)
    return {
        "pages": len(page_ids),
        "concurrency": concurrency,
        "requests": sent,
        "batches": sum(1 for n in log.batches if n),
        "errors": sum(b["errors"] for b in stats["backends"].values()),
        "wall_s": elapsed,
        "ideal_s": ideal_s,
        "rate": sent / elapsed,
        "ideal_rate": sent / ideal_s if ideal_s else float("nan"),
        "ratio": ideal_s / elapsed,
    }


MODEL = {"type": "llamacpp", "model": "qwen2.5-coder-1.5b-instruct", "n_ctx": 4096}
# the embedded default's settings before the speed work of issue 22 (stop 22): what `--compare` measures against
BEFORE = {
    "backends": {"generator": MODEL | {"prefix_cache_mb": 0}, "verifier": MODEL | {"prefix_cache_mb": 0}},
    "positives_verified": {"stop_early": False},
    "negatives_verified": {"stop_early": False},
}
QUICK = {
    "backends": {"generator": MODEL | {"model": "qwen2.5-coder-0.5b-instruct"}},
    "positives": {"n": 3},
    "negative_candidates": {
        "freeform": {"m": 4},
        "controlled": {"properties": ["number", "named entity"], "per_property": 1},
    },
}


def embedded(store: PageStore, page_ids: list[str], settings: dict) -> dict:
    """One run of the pipeline on ``page_ids``: its stats.json (with the per-stage profile) and wall time."""
    settings = {"backends": {"generator": MODEL}} | copy.deepcopy(settings)
    settings["backends"].setdefault("verifier", settings["backends"]["generator"])
    config = PipelineConfig.model_validate(settings)
    with tempfile.TemporaryDirectory() as run_dir:
        started = time.perf_counter()
        run_pipeline(store, config, run_dir, page_ids=page_ids)
        elapsed = time.perf_counter() - started
        stats = json.loads((Path(run_dir) / "stats.json").read_text())
    return stats | {"wall_s": elapsed}


def profile_table(runs: dict[str, dict], pages: int) -> Table:
    """Per page, stage by stage: seconds, requests and decoded tokens of each run; then what each run made."""
    table = Table(title=f"embedded pipeline, per page ({pages} pages, same session)", title_justify="left")
    table.add_column("stage")
    for name in runs:
        table.add_column(f"{name}: s", justify="right")
        table.add_column("requests", justify="right")
        table.add_column("decoded tokens", justify="right")
    for stage in next(iter(runs.values()))["profile"]:
        cells = []
        for stats in runs.values():
            cost = stats["profile"].get(stage, {}).get("per_page", {})
            cells += [f"{cost.get('seconds', 0):.1f}", f"{cost.get('requests_sent', 0):.1f}",
                      f"{cost.get('completion_tokens', 0):.0f}"]  # fmt: skip
        table.add_row(stage, *cells)
    table.add_section()
    rows = {
        "pages/hour": lambda s: f"{s['pages_per_hour']:.1f}",
        "verified positives / page": lambda s: f"{s['stages']['positives_verified']['kept'] / pages:.2f}",
        "verified negatives / page": lambda s: f"{_negatives(s, 'negatives_verified') / pages:.2f}",
        "selected negatives / page": lambda s: f"{_negatives(s, 'selected') / pages:.2f}",
    }
    for label, cell in rows.items():
        table.add_row(label, *[c for s in runs.values() for c in (cell(s), "", "")])
    return table


def _negatives(stats: dict, stage: str) -> int:
    return stats["stages"][stage]["kept_by_kind"].get("negative", 0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pages", type=Path, default=Path("runs/demo/pages"), help="the sample page store")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--skip-embedded", action="store_true")
    parser.add_argument("--skip-orchestration", action="store_true")
    parser.add_argument("--embedded-pages", type=int, default=1)
    parser.add_argument(
        "--compare", action="store_true", help="also run the settings before issue 22's speed work on the same pages"
    )
    args = parser.parse_args()
    console = Console(width=150)
    store = sample_store(args.pages)

    if not args.skip_orchestration:
        console.print(orchestration_table(store, args.quick))
    if not args.skip_embedded:
        page_ids = spread_sample(store, args.embedded_pages, seed=0)
        runs = {"quick": QUICK} if args.quick else {"default": {}}
        if args.compare:
            runs = {"before": BEFORE, "default": {}}
        results = {name: embedded(store, page_ids, settings) for name, settings in runs.items()}
        console.print(profile_table(results, len(page_ids)))
        if "before" in results:
            ratio = results["default"]["pages_per_hour"] / results["before"]["pages_per_hour"]
            console.print(f"pages/hour: {ratio:.2f}x the settings before")


def orchestration_table(store: PageStore, quick: bool) -> Table:
    table = Table(title="pipeline vs ideal (FAKE server, 100 ms a request)", title_justify="left")
    for column in ("pages", "concurrency", "requests", "batches", "errors", "achieved req/s", "ideal req/s", "ratio"):
        table.add_column(column, justify="right")
    for pages, concurrency, per_shard in [(16, 16, 16)] if quick else [(64, 16, 32), (64, 64, 64)]:
        row = orchestration(store, pages, concurrency, per_shard)
        table.add_row(
            str(row["pages"]),
            str(concurrency),
            str(row["requests"]),
            str(row["batches"]),
            str(row["errors"]),
            f"{row['rate']:.1f}",
            f"{row['ideal_rate']:.1f}",
            f"{row['ratio']:.2f}",
        )
    return table


if __name__ == "__main__":
    main()
