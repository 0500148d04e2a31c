"""The project's quality benchmark: do generated hard negatives make a better reranker?

Split: the sample documents by document (bench/data/quality-split.json: 12 test documents, seeded). Test set:
bench/data/quality-queries.jsonl, questions written by hand from the test documents' pages, each with a
rephrased twin that keeps the meaning with fewer of the page's words (quality-queries.md says how), and
quality-qrels.trec. Generated queries are never the test.

Training data, on the train documents only: the hand-labeled questions of verifier-pairs.jsonl whose page is
in a train document, as given positives with their hand-written unanswerable edits as negatives; a pipeline
run adds its rule-based negatives (``--llm-negatives`` also runs the embedded model's free-form negatives
with verification, which ``base`` needs); BM25 mines negative pages. Each recipe (``mined-only``, ``base``
when it can be made, ``full``, and ``reworded`` when the run has rephrasings) is mixed with the same number
of positives (``full`` adds their rephrasings) and trains the CPU cross-encoder with the same settings.
Then every reranker, plus the untrained start (and ``--zero-shot`` the embedded LLM), re-scores the same top
``--k`` of each first stage, for the original and the rephrased queries: NDCG@5 with its difference from
retrieval alone and from ``mined-only``, with paired-randomization significance.

    python bench/quality.py --quick   # the quick setting: 40 sampled questions (+ twins), BM25 and dense, no
                                      # LLM stage: ~22 min on 2 cores
    python bench/quality.py           # all 94 questions, BM25 and EmbeddingGemma (its index of the 839 pages
                                      # takes ~80 min on 2 cores, once)
    python bench/quality.py --llm-negatives --zero-shot   # adds the rows that need the embedded 1.5B: base
                                      # (~1 min a train positive) and zero-shot (~1 h a query set on 2 cores)
    python bench/quality.py --quick --teacher full   # adds students of the 1.5B's scores of full's pairs
    python bench/quality.py --generated   # trained on the generated training set (bench/trainset.py)
    python bench/quality.py --students bi --first-stages bm25,dense   # MiniLM bi-encoders adapted on each
                                      # recipe (`train --reranker bi-encoder`), as rerankers and as first stages
    python bench/quality.py --generated --students fusion --first-stages bm25,dense   # fusion rerankers
                                      # (`train --reranker fusion`) fitted on each recipe of the generated set

Every system scores all its (query, page) pairs of every first stage and query set in one pass ordered by
page, cached in OUT/scores.sqlite: a rerun scores only what is new.
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
from pathlib import Path

import yaml
from rich.console import Console
from rich.table import Table

from common import sample_store
from docrerank.cli.progress import progress_bar
from docrerank.evaluation import (
    PRIMARY,
    ScoreCache,
    candidate_pairs,
    evaluate,
    load_store,
    mean,
    paired_p_value,
    score_pairs,
)
from docrerank.evaluation.results import mark
from docrerank.rerankers import BiEncoderReranker, CrossEncoderReranker, FusionReranker, Reranker
from docrerank.retrieval import FIRST_STAGE, make_retriever

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "bench" / "data"
console = Console(width=150)
QUICK_QUERIES = 40  # with both first stages and no LLM stage: under 30 minutes on 2 cores


def docrerank(*args) -> None:
    subprocess.run([sys.executable, "-m", "docrerank.cli.app", *map(str, args)], check=True, cwd=ROOT)


def train_student(data: Path, model: Path, *options, epochs: float = 3) -> None:
    """`docrerank train` on ``data`` into ``model`` as this benchmark trains its students (every group, batch
    4 groups), unless ``model`` is already there."""
    if not (model / "reranker.json").exists():
        docrerank("train", "--data", data, "--out", model, "--held-out", "0", "--epochs", epochs, "--batch", "4",
                  *options)  # fmt: skip


def test_sets(store, out: Path) -> dict[str, object]:
    """The original and the rephrased test queries as two page-store benchmarks with the same qrels."""
    rows = [json.loads(line) for line in (DATA / "quality-queries.jsonl").read_text().splitlines() if line.strip()]
    sets = {}
    for name, field, suffix in (("original", "query", ""), ("rephrased", "rephrased", "-r")):
        path = out / f"queries-{name}.jsonl"
        path.write_text(
            "".join(json.dumps({"query_id": r["query_id"] + suffix, "query": r[field]}) + "\n" for r in rows)
        )
        sets[name] = load_store(store, path, DATA / "quality-qrels.trec")
    return sets


def training_data(store, out: Path, llm_negatives: bool, variants: int, generated: Path | None) -> dict[str, Path]:
    """A pipeline run on the train documents' labeled questions (or, ``generated``, the run directory of the
    generated training set of bench/trainset.py), mined pages, and each recipe's mixture."""
    if generated:
        return mixtures(store, out, generated)
    split = json.loads((DATA / "quality-split.json").read_text())["documents"]
    positives = out / "train-positives.jsonl"
    lines = [line for line in (DATA / "labeled-positives.jsonl").read_text().splitlines() if line.strip()]
    train = [line for line in lines if split[store[json.loads(line)["page_id"]].doc_id]["split"] == "train"]
    positives.write_text("\n".join(train) + "\n")
    config = yaml.safe_load((DATA / "labeled-run.yaml").read_text())
    config["positives"]["given"] = str(positives)
    if llm_negatives:
        config["negative_candidates"]["freeform"] = {"enabled": True, "m": variants}
        config["negatives_verified"] = {"enabled": True}
    (out / "run.yaml").write_text(yaml.safe_dump(config))
    run = out / "run"
    docrerank("generate", "--pages", store.root, "--run-dir", run, "--config", out / "run.yaml", "--no-progress")
    return mixtures(store, out, run)


def mixtures(store, out: Path, run: Path) -> dict[str, Path]:
    """Mined pages for the run's positives (BM25), and each recipe's mixture at the size of mined-only's."""
    docrerank("mine", "--pages", store.root, "--queries", run, "--out", out / "mined")
    total, made, rephrased = None, {}, 0
    for recipe in ("mined-only", "base", "full", "reworded"):  # mined-only first: its size is every recipe's total
        if recipe == "reworded" and not rephrased:
            continue  # without rephrasings it is full again
        target = out / f"mix-{recipe}"
        args = ["mix", "--pages", store.root, "--run-dir", run, "--mined", out / "mined", "--recipe", recipe]
        try:
            docrerank(*args, "--out", target, "--overwrite", *(["--total", total] if total else []))
        except subprocess.CalledProcessError:
            console.print(f"[yellow]recipe {recipe}: no mixture can be made from these sources; left out[/yellow]")
            continue
        summary = json.loads((target / "provenance.json").read_text())["summary"]
        rephrased += summary["by_variant"].get("rephrased", 0)
        if total is None:
            total = summary["examples"]
        elif summary["examples"] < total:
            console.print(f"[yellow]recipe {recipe}: {summary['examples']} examples, fewer than {total}; left out")
            continue
        made[recipe] = target
    return made


def sample_queries(sets: dict, count: int | None, seed: int = 0) -> dict:
    """The same seeded sample of test questions (and their twins) in every set; all of them without ``count``."""
    if count is None:
        return sets
    ids = sorted(next(iter(sets.values())).judged_queries)
    keep = {q.removesuffix("-r") for q in random.Random(seed).sample(ids, min(count, len(ids)))}
    for benchmark in sets.values():
        benchmark.queries = {q: text for q, text in benchmark.queries.items() if q.removesuffix("-r") in keep}
    return sets


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "quality")
    parser.add_argument("--store", type=Path, default=ROOT / "runs" / "demo" / "pages")
    parser.add_argument("--k", type=int, default=10, help="first-stage pages each reranker re-scores")
    parser.add_argument(
        "--first-stages", help=f"default: bm25 and the default first stage ({FIRST_STAGE}); quick: bm25,dense (MiniLM)"
    )
    parser.add_argument("--queries", type=int, help="a seeded sample of this many test questions (default all)")
    parser.add_argument("--quick", action="store_true", help=f"the quick setting: {QUICK_QUERIES} questions, no LLM")
    parser.add_argument("--epochs", type=float, default=3)
    parser.add_argument(
        "--students",
        default="ce",
        help="what each recipe trains: ce (the MiniLM cross-encoder), bi (a bi-encoder adapted from --bi-model, "
        "reranking and as a first stage of its own), fusion (a fusion of --bi-model's cosine with the query's "
        "words on the page), or several (ce,bi,fusion)",
    )
    parser.add_argument("--bi-model", default="all-MiniLM-L6-v2", help="the bi-encoder that --students bi adapts")
    parser.add_argument("--llm-negatives", action="store_true", help="free-form negatives from the embedded model")
    parser.add_argument(
        "--generated", action="store_true", help="train on the generated training set (bench/trainset.py)"
    )
    parser.add_argument(
        "--generated-run",
        type=Path,
        default=DATA / "trainset" / "run",
        help="its run directory; while bench/trainset.py extends it, a copy of what is committed: "
        "`git archive HEAD bench/data/trainset | tar -x -C DIR` (mine refuses an unfinished run)",
    )
    parser.add_argument("--variants", type=int, default=12, help="free-form variants per positive")
    parser.add_argument("--zero-shot", action="store_true", help="add the embedded LLM as a zero-shot reranker")
    parser.add_argument(
        "--teacher",
        default="",
        help="recipes (e.g. full) whose pairs the embedded 1.5B labels, for students "
        "trained on its scores (--targets teacher) and on its scores and the hard labels (both)",
    )
    args = parser.parse_args()
    if args.quick:
        args.queries = args.queries or QUICK_QUERIES
    args.first_stages = args.first_stages or ("bm25,dense" if args.quick else f"bm25,{FIRST_STAGE}")
    args.out.mkdir(parents=True, exist_ok=True)
    store = sample_store(args.store)
    sets = sample_queries(test_sets(store, args.out), args.queries)
    students = args.students.split(",")
    rerankers: dict[str, tuple[Reranker, str]] = {}
    if "ce" in students:
        rerankers["untrained"] = (CrossEncoderReranker(), "untrained")
    if "bi" in students:
        rerankers["bi-encoder untrained"] = (BiEncoderReranker(args.bi_model), f"bi:{args.bi_model}")
    if "fusion" in students:  # its start is the bi-encoder alone
        rerankers["fusion untrained"] = (FusionReranker(args.bi_model), f"fusion:{args.bi_model}")

    def trained(name: str, data: Path, model: Path, *options) -> None:
        train_student(data, model, *options, epochs=args.epochs)
        rerankers[name] = (Reranker.load(model), str(model))

    recipes = training_data(store, args.out, args.llm_negatives, args.variants, args.generated and args.generated_run)
    first_stages = args.first_stages.split(",")
    for recipe, data in recipes.items():
        if "ce" in students:
            trained(recipe, data, args.out / f"ce-{recipe}", "--lr", "2e-4")
        if "bi" in students:  # the default bi-encoder lr (2e-5): it starts trained
            adapted = args.out / f"bi-{recipe}"
            trained(f"bi-encoder {recipe}", data, adapted, "--reranker", "bi-encoder", "--model", args.bi_model)
            first_stages.append(f"dense:{adapted}")
        if "fusion" in students:
            fusion = args.out / f"fusion-{recipe}"
            trained(f"fusion {recipe}", data, fusion, "--reranker", "fusion", "--model", args.bi_model)
    for recipe in filter(None, args.teacher.split(",")):  # the embedded 1.5B's scores of a recipe's pairs
        labeled = args.out / f"teacher-{recipe}"
        docrerank("label", "--data", recipes[recipe], "--out", labeled, "--pages", store.root, "--no-progress")
        for targets in ("teacher", "both"):
            trained(f"{recipe}, {targets}", labeled, args.out / f"ce-{recipe}-{targets}", "--targets", targets)
    if args.zero_shot:
        from docrerank.backends import load_backend
        from docrerank.pipeline.config import PipelineConfig
        from docrerank.rerankers import LLMReranker

        backend = PipelineConfig().backends["verifier"]
        rerankers["zero-shot LLM"] = (LLMReranker(load_backend(backend)), backend.model_dump_json())

    candidates = {}  # (first stage, query set) -> the first stage's top k of each judged query
    for first_stage in first_stages:
        retriever = make_retriever(first_stage, store)
        for name, benchmark in sets.items():
            queries = benchmark.judged_queries
            rankings = retriever.search([benchmark.queries[q] for q in queries], args.k)
            candidates[first_stage, name] = dict(zip(queries, rankings, strict=True))
    cache = ScoreCache(args.out / "scores.sqlite")
    # every system scores all its pairs at once, ordered by page: a page shared by the query sets and first
    # stages is read once (for the LLM, its prompt prefix is evaluated once)
    pairs = [pair for (_, name), run in candidates.items() for pair in candidate_pairs(sets[name], run)]
    page = next(iter(sets.values())).page  # every set reads the same store
    with progress_bar() as bar:
        for system, (reranker, identity) in rerankers.items():
            if not reranker.pairwise:  # scored per query's set by evaluate()
                continue
            task = bar.add_task(f"{system} (pairs)", total=len(set(pairs)))
            score_pairs(reranker, f"{system}:{identity}", pairs, page, cache, lambda n, t=task: bar.advance(t, n))

    table = Table(title=f"Quality benchmark: NDCG@5 on hand-written questions of the test documents (top {args.k})")
    for column in ("first stage", "queries", "system", "NDCG@5", "Δ vs first stage", "Δ vs mined-only"):
        table.add_column(column)
    results = {}
    for (first_stage, name), run in candidates.items():
        result = evaluate(sets[name], run, rerankers, args.k, first_stage, cache)  # all from the cache
        by_name = {s.name: s.values[PRIMARY] for s in result.systems}
        results[f"{first_stage}/{name}"] = {s: mean(v) for s, v in by_name.items()}
        first = by_name[first_stage]
        for system, values in by_name.items():
            cells = [f"{mean(values):.3f}"]
            kind = next((k for k in ("bi-encoder", "fusion") if system.startswith(k)), None)
            pair = f"{kind} mined-only" if kind else "mined-only"
            for baseline in (first, by_name.get(pair)):
                if baseline is None or baseline is values:
                    cells.append("")
                else:
                    delta = mean(values) - mean(baseline)
                    cells.append(f"{delta:+.3f}{mark(paired_p_value(values, baseline))}")
            table.add_row(first_stage, name, system, *cells)
    console.print(table)
    (args.out / "quality.json").write_text(json.dumps(results, indent=2) + "\n")
    console.print(f"* p < 0.05, ** p < 0.01 (paired randomization test); written to {args.out / 'quality.json'}")


if __name__ == "__main__":
    main()
