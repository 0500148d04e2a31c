"""Hard negative mining throughput against sentence-transformers, and exact dense search at scale.

1. Mining, as a ratio against ``sentence_transformers.util.mine_hard_negatives`` (ST) measured in the same
   run, on the same corpus (the text of every page of the sample documents' store that has text), the same
   queries (the answerable pairs of ``bench/data/verifier-pairs.jsonl``, each with its positive page) and
   the same model (the bundled all-MiniLM-L6-v2, loaded once and shared). Equivalent settings: the 10 best
   pages that are not the positive (ours ``rank_min=1, rank_max=10, top_n=11``; ST ``range_min=0,
   range_max=10``), 3 of them sampled at random (ST ``sampling_strategy="random"``), candidates dropped
   at >= 0.95 x the positive's score (NV-Retriever's TopK-PercPos; ST ``relative_margin=0.05``), exact
   search (ST ``use_faiss=False``), the same encoding batch size. Ours is what ``docrerank mine`` does:
   ``DenseRetriever(store, chunk_words=0)`` (whole pages, truncated by the model, as ST embeds them),
   ``search`` + ``score`` (the positive's score) + ``mine``, timed from constructing the retriever (store
   fingerprint included) to the mined examples. Rows:

   - cold: our index built from scratch (its folder removed first) vs ST embedding the corpus, as it does
     on every call unless given a ``cache_folder``;
   - warm: our saved index reused (mining again with other settings) vs the same ST cold call; vs ST with a
     ``cache_folder`` holding the corpus embeddings only (its query file removed before each call: new
     queries over the same corpus, what our index saves too); and vs ST with a ``cache_folder`` holding
     both (the same queries mined again: ST then embeds nothing, ours encodes the queries again);
   - chunked: the default ``DenseRetriever`` (128-word chunks, stride 96, a page scores as its best chunk),
     cold: about three times the embedding work of ST, for better recall on long pages. It is the longest
     row, so it runs in the first ``--chunked-repeats`` repeats only (default 1).

   Ours runs on a private copy of the store's ``pages.parquet`` (under ``--out``), so the shared store's
   index folders are never touched (``--pages N`` keeps only the queries' positive pages and the first N
   others in it, for a quick run). The model is loaded, and has encoded once, before any timing; one untimed
   ST call fills its ``cache_folder``. Each repeat runs every row once, alternating ours and ST; the
   median of ``--repeats`` is reported. ratio = ours queries/s / ST
   queries/s (> 1: ours is faster). Sanity lines: the negatives each side mined, how many of ours are
   also ST's for the same query (both sample 3 of the same candidates with different generators, so the
   sets differ), and for how many queries the candidate sets left after the threshold are equal (ST run
   once more untimed with ``sampling_strategy="top"`` and ``num_negatives=10``).

2. The dense retriever at scale: ``docrerank.retrieval.dense.exact_search`` over 10^5 and 10^6 random unit
   vectors of the model's width (384, float32), ``--queries`` random unit queries, k=20: queries/s, the
   index matrix's bytes, and the extra memory of search: the peak RSS above the RSS before it (sampled
   every 2 ms with psutil) and the peak of numpy's temporaries (tracemalloc, one untimed call). With
   ``faiss-cpu`` installed, also an approximate ``IndexIVFFlat`` (inner product, sqrt(n) lists, trained
   on 40 x lists vectors) at each ``--nprobe``: build seconds, queries/s and recall@20 against exact
   search. Random vectors have no cluster structure, the worst case for an inverted-list index: its
   recall here is a lower bound for real embeddings.

The report (every figure, settings, versions) is written to ``--out``/report.json.

    python bench/mining.py                      # ~20 min on 2 busy cores
    python bench/mining.py --quick              # smoke test: 1 repeat, 150 pages, 10^4 vectors, 100 queries
    python bench/mining.py --only scale --sizes 100000
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import platform
import random
import resource
import shutil
import statistics
import sys
import threading
import time
import tracemalloc
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from common import sample_store  # bench/common.py: scripts run as `python bench/NAME.py`
from docrerank.embeddings import DEFAULT_EMBEDDER, load_embedder
from docrerank.pages import PageStore
from docrerank.retrieval.dense import DenseRetriever, exact_search
from docrerank.retrieval.mining import MinedExample, MiningSettings, mine
from docrerank.retrieval.queries import RetrievalQuery

ROOT = Path(__file__).resolve().parents[1]
PAIRS = ROOT / "bench" / "data" / "verifier-pairs.jsonl"
DIM = 384  # all-MiniLM-L6-v2's width
K = 20
RANK_MAX, NEGATIVES, RATIO = 10, 3, 0.95  # the ten best other pages, 3 sampled, TopK-PercPos 0.95
console = Console(width=200)
AGAINST = {
    "st_cold": "ST (embeds the corpus)",
    "st_corpus_cache": "ST, corpus cached",
    "st_cache": "ST, corpus + queries cached",
}


# ---------------------------------------------------------------------------------------------- part 1: mining


def private_store(store: PageStore, folder: Path, keep: set[str], limit: int | None) -> PageStore:
    """A copy of the store's manifest and pages table (no images: only text is read), with no index yet;
    with ``limit``, only the pages in ``keep`` and the first ``limit`` others."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    shutil.copy2(store.root / "manifest.json", folder / "manifest.json")
    if limit is None:
        shutil.copy2(store.root / "pages.parquet", folder / "pages.parquet")
    else:
        import pyarrow.parquet as pq

        table = pq.read_table(store.root / "pages.parquet")
        ids = table.column("page_id").to_pylist()
        wanted = keep | set([p for p in ids if p not in keep][:limit])
        pq.write_table(table.take([i for i, p in enumerate(ids) if p in wanted]), folder / "pages.parquet")
    return PageStore.open(folder)


def answerable_queries(path: Path, store: PageStore) -> list[RetrievalQuery]:
    """The answerable pairs as queries with their positive page (ids mapped through (file, page index) when
    this store's ids differ, as ``bench/verify.py`` does)."""
    by_place = {(Path(p.source_path).parent.name + "/" + Path(p.source_path).name, p.page_index): p for p in store}
    queries = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        row = json.loads(line)
        if not row["answerable"]:
            continue
        page_id = row["page_id"]
        if page_id not in store and (row["file"], row["page_index"]) in by_place:
            page_id = by_place[(row["file"], row["page_index"])].page_id
        if page_id in store:
            queries.append(RetrievalQuery(f"q{number}", row["query"], [page_id]))
        else:
            console.print(f"[yellow]skipped[/yellow] {path}:{number}: page {page_id} is not in the store")
    return queries


def ours(store: PageStore, queries: list[RetrievalQuery], chunk: int, batch_size: int, seed: int) -> list:
    """``docrerank mine``'s work: retriever, search, the positives' scores, mine."""
    retriever = DenseRetriever(store, chunk_words=chunk, batch_size=batch_size)
    texts = [q.text for q in queries]
    rankings = retriever.search(texts, RANK_MAX + 1)
    positive_scores = retriever.score(texts, [q.positives[0] for q in queries])
    settings = MiningSettings(
        top_n=RANK_MAX + 1, negatives=NEGATIVES, rank_min=1, rank_max=RANK_MAX, max_score_ratio=RATIO, seed=seed
    )
    return mine(queries, rankings, positive_scores, settings)


def drop_index(store: PageStore, chunk: int) -> None:
    index_dir = DenseRetriever(store, chunk_words=chunk).index_dir
    shutil.rmtree(index_dir, ignore_errors=True)
    shutil.rmtree(index_dir.with_name(index_dir.name + ".tmp"), ignore_errors=True)


def st_mine(dataset, corpus: list[str], model, batch_size: int, seed: int, cache: Path | None = None, **override):
    """``mine_hard_negatives`` with the settings equivalent to ours; its progress bars are silenced."""
    from sentence_transformers.util import mine_hard_negatives

    settings = {
        "range_min": 0,
        "range_max": RANK_MAX,
        "relative_margin": 1 - RATIO,
        "num_negatives": NEGATIVES,
        "sampling_strategy": "random",
        "output_format": "triplet",
        **override,
    }
    random.seed(seed)  # its random sampling draws from Python's global generator
    with contextlib.redirect_stderr(io.StringIO()):  # tqdm bars (show_progress_bar=True is hard-coded)
        return mine_hard_negatives(
            dataset,
            model,
            anchor_column_name="query",
            positive_column_name="positive",
            corpus=corpus,
            batch_size=batch_size,
            use_faiss=False,
            verbose=False,
            cache_folder=str(cache) if cache else None,
            **settings,
        )


def timed(function: Callable[[], object]) -> tuple[float, object]:
    started = time.perf_counter()
    result = function()
    return time.perf_counter() - started, result


def eligible_sets(retriever: DenseRetriever, queries: list[RetrievalQuery]) -> list[set[str]]:
    """Ours: per query, the pages of ranks 1..10 (positive left out) scoring below 0.95 x the positive."""
    texts = [q.text for q in queries]
    rankings = retriever.search(texts, RANK_MAX + 1)
    positive_scores = retriever.score(texts, [q.positives[0] for q in queries])
    sets = []
    for query, ranking, positive in zip(queries, rankings, positive_scores, strict=True):
        others = [(p, s) for p, s in ranking if p not in query.positives][:RANK_MAX]
        sets.append({p for p, s in others if s < RATIO * positive})
    return sets


def mining_part(args: argparse.Namespace) -> dict:
    from datasets import Dataset  # sentence-transformers' input type; installed with it

    shared = sample_store(args.store)
    queries = answerable_queries(args.pairs, shared)
    store = private_store(shared, args.out / "store", {q.positives[0] for q in queries}, args.pages)
    text_of = {p.page_id: p.text for p in store if p.text.strip()}
    page_of_text = {text: page_id for page_id, text in text_of.items()}
    corpus = list(text_of.values())  # distinct texts here; ST de-duplicates its corpus by text
    dataset = Dataset.from_dict(
        {"query": [q.text for q in queries], "positive": [text_of[q.positives[0]] for q in queries]}
    )
    model = load_embedder()
    model.encode(["warm up"], show_progress_bar=False)  # load and first-call costs outside every timing
    st_cache = args.out / "st-cache"
    shutil.rmtree(st_cache, ignore_errors=True)
    console.print(
        f"mining: {len(queries)} queries, {len(corpus)} pages with text (of {len(store)}), model "
        f"{DEFAULT_EMBEDDER}, batch size {args.batch_size}, {args.repeats} repeat(s)"
    )
    st_mine(dataset, corpus, model, args.batch_size, args.seed, st_cache)  # untimed: fills its cache_folder

    keys = ("st_cold", "ours_cold", "st_corpus_cache", "st_cache", "ours_warm", "ours_chunked")
    times: dict[str, list[float]] = {k: [] for k in keys}
    results: dict[str, object] = {}
    for repeat in range(args.repeats):
        seconds, results["st"] = timed(lambda: st_mine(dataset, corpus, model, args.batch_size, args.seed))
        times["st_cold"].append(seconds)
        drop_index(store, 0)
        seconds, results["ours"] = timed(lambda: ours(store, queries, 0, args.batch_size, args.seed))
        times["ours_cold"].append(seconds)
        for path in st_cache.glob("query_embeddings_*.npy"):
            path.unlink()  # the corpus stays cached; the call embeds the queries and saves them again
        seconds, _ = timed(lambda: st_mine(dataset, corpus, model, args.batch_size, args.seed, st_cache))
        times["st_corpus_cache"].append(seconds)
        seconds, _ = timed(lambda: st_mine(dataset, corpus, model, args.batch_size, args.seed, st_cache))
        times["st_cache"].append(seconds)
        seconds, results["ours_warm"] = timed(lambda: ours(store, queries, 0, args.batch_size, args.seed))
        times["ours_warm"].append(seconds)
        if repeat < max(1, args.chunked_repeats):  # at least once
            drop_index(store, 128)
            seconds, results["ours_chunked"] = timed(lambda: ours(store, queries, 128, args.batch_size, args.seed))
            times["ours_chunked"].append(seconds)
        done = ", ".join(f"{k} {v[-1]:.2f}s" for k, v in times.items() if len(v) > repeat)
        console.print(f"  repeat {repeat + 1}: {done}")

    n = len(queries)
    median = {k: statistics.median(v) for k, v in times.items()}
    qps = {k: n / v for k, v in median.items()}
    rows = [  # name, index, key, reference key
        ("ST mine_hard_negatives", "embeds the corpus", "st_cold", None),
        ("ours, chunk_words=0", "cold: built", "ours_cold", "st_cold"),
        ("ours, chunk_words=0", "warm: reused", "ours_warm", "st_cold"),
        ("ST mine_hard_negatives, cache_folder", "warm: cached corpus", "st_corpus_cache", None),
        ("ours, chunk_words=0", "warm: reused", "ours_warm", "st_corpus_cache"),
        ("ST mine_hard_negatives, cache_folder", "warm: cached corpus + queries", "st_cache", None),
        ("ours, chunk_words=0", "warm: reused", "ours_warm", "st_cache"),
        ("ours, chunk_words=128 stride 96 (default)", "cold: built", "ours_chunked", "st_cold"),
    ]
    runs = f"median of {args.repeats}; chunked: of {len(times['ours_chunked'])}"
    table = Table(title=f"mining {n} queries over {len(corpus)} pages ({runs})", title_justify="left")
    for column in ("miner", "index", "seconds", "queries/s", "ratio ours/ST", "against"):
        table.add_column(column, justify="left" if column in ("miner", "index", "against") else "right")
    ratios = {}
    for name, index, key, reference in rows:
        ratio = qps[key] / qps[reference] if reference else None
        if reference:
            ratios[f"{key}/{reference}"] = ratio
        table.add_row(
            name,
            index,
            f"{median[key]:.2f}",
            f"{qps[key]:.1f}",
            f"{ratio:.2f}" if ratio else "-",
            AGAINST.get(reference, "-"),
        )
    console.print(table)

    # Sanity: both sides mine negatives, for the same queries, from the same candidates.
    st_negatives: dict[str, set[str]] = {}
    for row in results["st"]:
        st_negatives.setdefault(row["query"], set()).add(page_of_text[row["negative"]])
    mined: list[MinedExample] = results["ours"]
    our_negatives = {e.query: {n.page_id for n in e.negatives} for e in mined}
    overlap = sum(len(our_negatives[q] & st_negatives.get(q, set())) for q in our_negatives)
    same_sets = sum(our_negatives[q] == st_negatives.get(q, set()) for q in our_negatives)
    candidates = st_mine(
        dataset,
        corpus,
        model,
        args.batch_size,
        args.seed,
        st_cache,
        num_negatives=RANK_MAX,
        sampling_strategy="top",
        output_format="labeled-list",
    )
    st_eligible = {
        row["query"]: {page_of_text[t] for t, label in zip(row["positive"], row["labels"], strict=True) if not label}
        for row in candidates
    }
    our_eligible = eligible_sets(DenseRetriever(store, chunk_words=0, batch_size=args.batch_size), queries)
    same_candidates = sum(e == st_eligible.get(q.text, set()) for q, e in zip(queries, our_eligible, strict=True))
    sanity = {
        "ours": {
            "negatives": sum(len(v) for v in our_negatives.values()),
            "queries_with_negatives": sum(bool(v) for v in our_negatives.values()),
        },
        "st": {
            "negatives": sum(len(v) for v in st_negatives.values()),
            "queries_with_negatives": sum(bool(v) for v in st_negatives.values()),
        },
        "chunked_negatives": sum(len(e.negatives) for e in results["ours_chunked"]),
        "overlap_negatives": overlap,
        "queries_same_negatives": same_sets,
        "queries_same_candidates": same_candidates,
        "candidates_ours": sum(map(len, our_eligible)),
        "candidates_st": sum(map(len, st_eligible.values())),
    }
    console.print(
        f"negatives: ours {sanity['ours']['negatives']} on {sanity['ours']['queries_with_negatives']} queries, "
        f"ST {sanity['st']['negatives']} on {sanity['st']['queries_with_negatives']} queries (chunked: "
        f"{sanity['chunked_negatives']}); {overlap} of ours are also ST's for the same query, same 3 pages on "
        f"{same_sets} of {n} queries (random sampling, different generators); candidates after the threshold: "
        f"ours {sanity['candidates_ours']}, ST {sanity['candidates_st']}, the same set on {same_candidates} of {n}"
    )
    return {
        "queries": n,
        "pages": len(corpus),
        "model": DEFAULT_EMBEDDER,
        "batch_size": args.batch_size,
        "repeats": args.repeats,
        "chunked_repeats": len(times["ours_chunked"]),
        "pages_limit": args.pages,
        "seconds": times,
        "median_seconds": median,
        "queries_per_second": qps,
        "ratios": ratios,
        "sanity": sanity,
    }


# ----------------------------------------------------------------------------------------------- part 2: scale


def rss() -> int:
    import psutil

    return psutil.Process().memory_info().rss


class PeakRss:
    """The peak RSS above the RSS at entry, sampled every 2 ms (psutil); without psutil, the rise of
    ``ru_maxrss`` (0 when the process peaked higher before)."""

    def __enter__(self) -> PeakRss:
        try:
            self.base = rss()
        except ImportError:
            self.base, self.thread = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, None
            return self
        self.peak, self.stop = self.base, threading.Event()
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()
        return self

    def _sample(self) -> None:
        while not self.stop.wait(0.002):
            self.peak = max(self.peak, rss())

    def __exit__(self, *exc) -> None:
        if self.thread is None:
            self.peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        else:
            self.stop.set()
            self.thread.join()
            self.peak = max(self.peak, rss())
        self.extra = max(0, self.peak - self.base)


def numpy_peak(function: Callable[[], object]) -> int:
    """Peak bytes of the allocations made while ``function`` runs (numpy reports its arrays to tracemalloc)."""
    tracemalloc.start()
    tracemalloc.reset_peak()
    try:
        function()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def unit_vectors(rng: np.random.Generator, n: int) -> np.ndarray:
    vectors = rng.standard_normal((n, DIM), dtype=np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors


def scale_part(args: argparse.Namespace) -> dict:
    try:
        import faiss
    except ImportError:
        faiss = None
    MiB = 2**20
    rng = np.random.default_rng(args.seed)
    queries = unit_vectors(rng, args.queries)
    table = Table(
        title=f"dense search, {args.queries} queries, k={K}, random unit vectors of {DIM} float32 "
        f"(median of {args.repeats})",
        title_justify="left",
    )
    columns = ("vectors", "search", "index MiB", "build s", "seconds", "queries/s", "RSS +MiB", "numpy +MiB")
    for column in (*columns, f"recall@{K}"):
        table.add_column(column, justify="left" if column == "search" else "right")
    report = []
    for n in args.sizes:
        rows = unit_vectors(rng, n)
        runs, exact = [], None
        for _ in range(args.repeats):
            with PeakRss() as memory:
                seconds, (exact, _) = timed(partial(exact_search, queries, rows, K))
            runs.append((seconds, memory.extra))
        seconds = statistics.median(s for s, _ in runs)
        extra = max(m for _, m in runs)
        temporaries = numpy_peak(partial(exact_search, queries, rows, K))
        entry = {
            "vectors": n,
            "search": "exact_search",
            "index_bytes": rows.nbytes,
            "seconds": [s for s, _ in runs],
            "median_seconds": seconds,
            "queries_per_second": args.queries / seconds,
            "peak_rss_extra_bytes": extra,
            "numpy_peak_bytes": temporaries,
        }
        report.append(entry)
        table.add_row(
            f"{n:,}",
            "exact (numpy, blocked)",
            f"{rows.nbytes / MiB:.0f}",
            "-",
            f"{seconds:.2f}",
            f"{args.queries / seconds:,.0f}",
            f"{extra / MiB:.0f}",
            f"{temporaries / MiB:.0f}",
            "1.000",
        )
        if faiss is None:
            continue
        nlist = max(1, round(n**0.5))
        with PeakRss() as memory:
            started = time.perf_counter()
            index = faiss.IndexIVFFlat(faiss.IndexFlatIP(DIM), DIM, nlist, faiss.METRIC_INNER_PRODUCT)
            sample = rows[rng.choice(n, min(n, 40 * nlist), replace=False)]
            index.train(sample)
            index.add(rows)
            build = time.perf_counter() - started
        index_bytes = n * (DIM * 4 + 8) + nlist * DIM * 4  # vectors, ids, centroids
        for nprobe in args.nprobe:
            index.nprobe = min(nprobe, nlist)
            runs = []
            for _ in range(args.repeats):
                seconds, (_, found) = timed(partial(index.search, queries, K))
                runs.append(seconds)
            seconds = statistics.median(runs)
            recall = float(np.mean([len(set(a) & set(b)) / K for a, b in zip(found, exact, strict=True)]))
            report.append(
                {
                    "vectors": n,
                    "search": f"faiss IndexIVFFlat nlist={nlist} nprobe={index.nprobe}",
                    "index_bytes": index_bytes,
                    "build_seconds": build,
                    "build_rss_extra_bytes": memory.extra,
                    "seconds": runs,
                    "median_seconds": seconds,
                    "queries_per_second": args.queries / seconds,
                    f"recall@{K}": recall,
                    "ratio_to_exact": entry["median_seconds"] / seconds,
                }
            )
            table.add_row(
                f"{n:,}",
                f"faiss IVFFlat {nlist} lists, nprobe {index.nprobe} ({entry['median_seconds'] / seconds:.1f}x exact)",
                f"{index_bytes / MiB:.0f}",
                f"{build:.1f}",
                f"{seconds:.3f}",
                f"{args.queries / seconds:,.0f}",
                f"{memory.extra / MiB:.0f} (build)",
                "-",
                f"{recall:.3f}",
            )
        del index
        del rows
    console.print(table)
    if faiss is None:
        console.print("[yellow]faiss rows skipped[/yellow]: faiss is not installed (pip install faiss-cpu)")
    console.print(
        "RSS +MiB: peak RSS above the RSS before the call (sampled every 2 ms); numpy +MiB: peak of numpy's "
        "temporaries (tracemalloc); index MiB: the vectors (for faiss, plus ids and centroids)"
    )
    return {"dim": DIM, "k": K, "queries": args.queries, "faiss": getattr(faiss, "__version__", None), "rows": report}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", type=Path, default=ROOT / "runs" / "demo" / "pages")
    parser.add_argument("--pairs", type=Path, default=PAIRS)
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "bench-mining")
    parser.add_argument("--only", choices=["mining", "scale"], help="run one part only")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=64, help="encoding batch size, both sides")
    parser.add_argument("--sizes", default="100000,1000000", help="numbers of vectors searched (part 2)")
    parser.add_argument("--queries", type=int, default=1000, help="query vectors (part 2)")
    parser.add_argument("--nprobe", default="16,128", help="faiss IVF lists probed (part 2)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--chunked-repeats", type=int, default=1, help="repeats that also time the chunked row")
    parser.add_argument("--pages", type=int, help="mine over the positive pages and this many others only")
    parser.add_argument("--quick", action="store_true", help="1 repeat, 150 pages, 10^4 vectors, 100 queries")
    args = parser.parse_args()
    if args.quick:
        args.repeats, args.pages, args.sizes, args.queries = 1, args.pages or 150, "10000", 100
    args.sizes = [int(s) for s in args.sizes.split(",")]
    args.nprobe = [int(s) for s in args.nprobe.split(",")]
    args.out.mkdir(parents=True, exist_ok=True)

    report: dict = {
        "command": "python bench/mining.py " + " ".join(sys.argv[1:]),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "versions": versions(),
    }
    started = time.perf_counter()
    if args.only in (None, "mining"):
        report["mining"] = mining_part(args)
    if args.only in (None, "scale"):
        report["scale"] = scale_part(args)
    report["wall_seconds"] = time.perf_counter() - started
    (args.out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    console.print(f"report: {args.out / 'report.json'} ({report['wall_seconds']:.0f} s)")


def versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for name in ("docrerank", "sentence-transformers", "torch", "numpy", "faiss-cpu"):
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = None
    return found


if __name__ == "__main__":
    main()
