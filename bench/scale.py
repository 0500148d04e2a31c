"""Scaling out: the Ray executor's overhead against the local one, and a sizing table for a GPU cluster.

1. Overhead: the same job (every stage of the pipeline over ``--pages`` sample pages, against the FAKE
   loopback server of bench/backends.py answering every request after 100 ms in a child process) run by the
   local executor and by the Ray executor with one actor (shards in turn, as the local one runs them), in
   fresh run directories, alternating, ``--repeats`` times each; the median wall times and their ratio (Ray /
   local; goal <= 1.10). A local Ray cluster is started before the timings (its start-up is not counted;
   each Ray run's actor start-up is). A row with two actors shows what running shards side by side gives; a
   row with the negatives' verification on a pool of its own (``ray.stages``), what moving a shard from pool
   to pool gives (one shard verified while the next is generated).
2. Sizing: from a real run's stats.json (``--stats``; ``make demo`` writes runs/demo/run/stats.json), each
   stage's prompt and decoded tokens per page, times a GPU's throughput that you state (``--prompt-tps``,
   ``--decode-tps``; the defaults and where they come from are below): GPU-seconds a page, pages/hour per GPU,
   GPU-hours for 10^6 pages. Prompt and decode are added, as if one GPU did one after the other: a
   conservative bound (a server overlaps them across requests).

    python bench/scale.py                       # both (~5 min on 2 cores)
    python bench/scale.py --skip-overhead --stats RUN/stats.json --prompt-tps 30000 --decode-tps 12500
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from common import sample_store  # bench/common.py: scripts run as `python bench/NAME.py`
from docrerank.pages.sample import spread_sample
from docrerank.pipeline.config import PipelineConfig, RaySettings, StageResources
from docrerank.pipeline.generate import run_pipeline
from docrerank.pipeline.ray_executor import RayExecutor
from docrerank.testing.fake_server import FakeOpenAIServer

LATENCY_S = 0.1
# A GPU's throughput for a 7-9B model under vLLM at high concurrency, from published third-party benchmarks
# (the user's own server's figures are better: pass them):
# - prompt (prefill) tokens/s: ~29,800 total tokens/s, Qwen3.5-9B on one H100 80GB, vLLM's "throughput
#   profile" (GPUStack performance lab, docs.gpustack.ai/latest/performance-lab/qwen3.5-9b/h100);
# - decoded tokens/s: ~12,500 output tokens/s, Llama 3.1 8B BF16 on one H100 80GB (vLLM benchmarks collected
#   at morphllm.com/vllm-benchmarks, 2026).
PROMPT_TPS = 29_800
DECODE_TPS = 12_500


def overhead(store, pages: int, repeats: int) -> dict[str, list[float]]:
    """Wall seconds of each run: local, Ray with one actor, Ray with two, Ray with one actor and the negatives'
    verification on a pool of its own (one more actor; alternating)."""
    import ray

    page_ids = spread_sample(store, pages, seed=0)
    own_pool = RaySettings(stages={"negatives_verified": StageResources(workers=1)})
    executors = {
        "local": (None, RaySettings()),
        "ray, 1 actor": (RayExecutor(workers=1), RaySettings()),
        "ray, 2 actors": (RayExecutor(workers=2), RaySettings()),
        "ray, 1 actor + 1 verifying": (RayExecutor(workers=1), own_pool),
    }
    times: dict[str, list[float]] = {name: [] for name in executors}
    # no token: one written to ~/.ray/auth_token would turn token auth on for later `ray start`s (the tests')
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        with FakeOpenAIServer(latency_s=LATENCY_S, separate_process=True, answer_schemas=True) as server:
            backend = server.backend_config(max_concurrency=8)
            config = PipelineConfig.model_validate(
                {"pages_per_shard": 4, "backends": {"generator": backend, "verifier": backend}}
            )
            for _ in range(repeats):
                for name, (executor, placement) in executors.items():
                    with tempfile.TemporaryDirectory() as run_dir:
                        started = time.perf_counter()
                        placed = config.model_copy(update={"ray": placement})
                        run_pipeline(store, placed, run_dir, page_ids=page_ids, executor=executor)
                        times[name].append(time.perf_counter() - started)
    finally:
        ray.shutdown()
    return times


def overhead_table(times: dict[str, list[float]], pages: int) -> Table:
    table = Table(title=f"Ray executor vs local, {pages} pages, FAKE server (100 ms a request)", title_justify="left")
    for column in ("executor", "median s", "runs", "ratio to local"):
        table.add_column(column, justify="right")
    local = statistics.median(times["local"])
    for name, runs in times.items():
        median = statistics.median(runs)
        table.add_row(name, f"{median:.1f}", " ".join(f"{t:.1f}" for t in runs), f"{median / local:.2f}")
    return table


def sizing_table(stats: dict, prompt_tps: float, decode_tps: float) -> Table:
    """Per stage: tokens a page (prompt, decoded), GPU-seconds a page; then pages/hour per GPU and GPU-hours
    for 10^6 pages."""
    profile = stats.get("profile") or {}
    if not profile or not stats.get("pages_run"):
        raise SystemExit("the stats.json has no profile (a run that ran no stage, or an older docrerank): rerun it")
    title = (
        f"sizing from {stats['pages_run']} pages' profile: {prompt_tps:,.0f} prompt and {decode_tps:,.0f} decoded "
        "tokens/s per GPU"
    )
    table = Table(title=title, title_justify="left")
    for column in ("stage", "requests/page", "prompt tokens/page", "decoded tokens/page", "GPU-s/page"):
        table.add_column(column, justify="right")
    total = 0.0
    for stage, cost in profile.items():
        per_page = cost["per_page"]
        seconds = per_page["prompt_tokens"] / prompt_tps + per_page["completion_tokens"] / decode_tps
        total += seconds
        table.add_row(
            stage,
            f"{per_page['requests_sent']:.1f}",
            f"{per_page['prompt_tokens']:.0f}",
            f"{per_page['completion_tokens']:.0f}",
            f"{seconds:.3f}",
        )
    table.add_section()
    table.add_row("all stages", "", "", "", f"{total:.3f}")
    table.add_row("pages/hour per GPU", "", "", "", f"{3600 / total:,.0f}")
    table.add_row("GPU-hours for 10^6 pages", "", "", "", f"{1e6 * total / 3600:,.1f}")
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pages-store", type=Path, default=Path("runs/demo/pages"), help="the sample page store")
    parser.add_argument("--pages", type=int, default=32, help="pages of the overhead job")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-overhead", action="store_true")
    parser.add_argument("--stats", type=Path, default=Path("runs/demo/run/stats.json"), help="a real run's stats.json")
    parser.add_argument("--prompt-tps", type=float, default=PROMPT_TPS, help="prompt tokens/s per GPU")
    parser.add_argument("--decode-tps", type=float, default=DECODE_TPS, help="decoded tokens/s per GPU")
    args = parser.parse_args()
    console = Console(width=150)
    if not args.skip_overhead:
        times = overhead(sample_store(args.pages_store), args.pages, args.repeats)
        console.print(overhead_table(times, args.pages))
    if args.stats.is_file():
        console.print(sizing_table(json.loads(args.stats.read_text()), args.prompt_tps, args.decode_tps))
    else:
        console.print(f"no {args.stats}: run `make demo` (or pass --stats RUN/stats.json) for the sizing table")


if __name__ == "__main__":
    main()
