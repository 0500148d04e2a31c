"""The generated training set: the embedded pipeline on the train documents' pages, never the test documents'.

    python bench/trainset.py --pages 100   # generate up to the first 100 train pages: resumes a killed run,
                                           # and a larger --pages extends the same set (~3-4 min a page here)
    python bench/trainset.py               # only report what the set holds
    python bench/trainset.py --pages 100 --force   # after a change of the pipeline's settings or filters

Pages: the train documents of bench/data/quality-split.json, pages with text, one document after another
(`spread_sample`'s seeded order over the whole store, test documents left out), so the first N pages of a
larger --pages are the N pages of a smaller one. Settings: bench/data/trainset/config.yaml (the pipeline's
defaults, the embedded 1.5B generating and verifying, but two positives kept a page: more examples an
hour). The run directory, bench/data/trainset/run, is committed without its response cache: its finished
shards are what resume and extension build on, and the cache (in .gitignore) only spares the requests of a
shard killed half-way. bench/data/trainset/manifest.json records the pages, the model's weights, the seed
and what the run holds, for the README and the next session.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from common import sample_store  # bench/common.py: scripts run as `python bench/NAME.py`
from docrerank.backends.bundles import BUNDLES
from docrerank.cli.progress import StageBars
from docrerank.pipeline.config import PipelineConfig
from docrerank.pipeline.generate import run_pipeline
from docrerank.pipeline.rundir import RunDir
from docrerank.pipeline.stats import run_stats
from docrerank.samples.split import train_pages

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "bench" / "data"
SET = DATA / "trainset"


def manifest(store, config: PipelineConfig, run: RunDir) -> dict:
    """What the run holds: its finished pages (every stage done), their documents and what was made of them."""
    finished = [pid for shard, ids in run.shard_pages().items() if run.is_done("selected", shard) for pid in ids]
    stages = run_stats(run)["stages"]
    model = config.backends["generator"]
    return {
        "command": "python bench/trainset.py --pages N (extends or resumes; see the docstring)",
        "store": "the sample documents (shared/corpus.txt), ingested with default settings",
        "model": {"bundle": model.model, "sha256": BUNDLES[model.model].sha256} if model.model in BUNDLES else None,
        "seed": config.seed,
        "pages_planned": sum(len(ids) for ids in run.shard_pages().values()),
        "pages": len(finished),
        "documents": len({store.get(pid).doc_id for pid in finished}),
        "positives": stages["selected"]["kept_by_kind"].get("positive", 0),
        "rephrased": stages["selected"]["kept_by_kind"].get("rephrased", 0),
        "negatives_verified": stages["negatives_verified"]["kept_by_kind"].get("negative", 0),
        "negatives_selected": stages["selected"]["kept_by_kind"].get("negative", 0),
        "page_ids": sorted(finished),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=0, help="generate up to this many train pages (0: report)")
    parser.add_argument("--store", type=Path, default=ROOT / "runs" / "demo" / "pages")
    parser.add_argument(
        "--force", action="store_true", help="redo what changed settings made stale (answered requests are cached)"
    )
    args = parser.parse_args()
    store = sample_store(args.store)
    config = PipelineConfig.from_yaml(SET / "config.yaml")
    run = RunDir(SET / "run")
    if args.pages:
        order = train_pages(store, DATA / "quality-split.json")
        held = sum(len(ids) for ids in run.shard_pages().values()) if run.root.exists() else 0
        pages = order[: max(args.pages, held)]  # the pages a run holds are a prefix of the same order
        print(f"{len(order)} train pages; the set's first {len(pages)} ({held} planned before)")
        with StageBars() as bars:
            run_pipeline(store, config, run.root, force=args.force, on_progress=bars, page_ids=pages)
    summary = manifest(store, config, run)
    (SET / "manifest.json").write_text(json.dumps(summary, indent=1) + "\n")
    print(json.dumps({k: v for k, v in summary.items() if k != "page_ids"}, indent=1))


if __name__ == "__main__":
    main()
