"""The project's quality benchmark: do generated hard negatives make a better reranker?

Split: the sample documents by document (bench/data/quality-split.json: 12 test documents, seeded). Test set:
bench/data/quality-queries.jsonl, questions written by hand from the test documents' pages, each with a
rephrased twin that keeps the meaning with fewer of the page's words (quality-queries.md says how), and
quality-qrels.trec. Generated queries are never the test.

Training data, on the train documents only: the hand-labeled questions of verifier-pairs.jsonl whose page is
in a train document, as given positives with their hand-written unanswerable edits as negatives; a pipeline
run adds its rule-based negatives (``--llm-negatives`` also runs the embedded model's free-form negatives
with verification, which ``base`` needs); BM25 mines negative pages. Each recipe (``mined-only``, ``base``
when it can be made, ``full``) is mixed with the same number of examples and trains the CPU cross-encoder
with the same settings. Then every reranker, plus the untrained start (and ``--zero-shot`` the embedded LLM),
re-scores the same top ``--k`` of each first stage, for the original and the rephrased queries: NDCG@5 with
its difference from retrieval alone and from ``mined-only``, with paired-randomization significance.

    python bench/quality.py --first-stages bm25   # the quick run (~45 min on 2 cores; no model generation)
    python bench/quality.py            # BM25 and dense first stages
    python bench/quality.py --llm-negatives --zero-shot   # adds the embedded model's rows (hours on 2 cores)
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import yaml
from rich.console import Console
from rich.table import Table

from common import sample_store
from docrerank.cli.progress import progress_bar
from docrerank.evaluation import PRIMARY, ScoreCache, evaluate, load_store, mean, paired_p_value
from docrerank.evaluation.results import mark
from docrerank.rerankers import CrossEncoderReranker, Reranker
from docrerank.retrieval import make_retriever

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "bench" / "data"
console = Console(width=150)


def docrerank(*args) -> None:
    subprocess.run([sys.executable, "-m", "docrerank.cli.app", *map(str, args)], check=True, cwd=ROOT)


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


def training_data(store, out: Path, llm_negatives: bool) -> dict[str, Path]:
    """A pipeline run on the train documents' labeled questions, mined pages, and each recipe's mixture."""
    split = json.loads((DATA / "quality-split.json").read_text())["documents"]
    positives = out / "train-positives.jsonl"
    lines = [line for line in (DATA / "labeled-positives.jsonl").read_text().splitlines() if line.strip()]
    train = [line for line in lines if split[store[json.loads(line)["page_id"]].doc_id]["split"] == "train"]
    positives.write_text("\n".join(train) + "\n")
    config = yaml.safe_load((DATA / "labeled-run.yaml").read_text())
    config["positives"]["given"] = str(positives)
    if llm_negatives:
        config["negatives_freeform"] = {"enabled": True}
        config["negative_verification"] = {"enabled": True}
    (out / "run.yaml").write_text(yaml.safe_dump(config))
    run = out / "run"
    docrerank("generate", "--pages", store.root, "--run-dir", run, "--config", out / "run.yaml", "--no-progress")
    docrerank("mine", "--pages", store.root, "--queries", run, "--out", out / "mined")
    total, mixtures = None, {}
    for recipe in ("mined-only", "base", "full"):  # mined-only first: its size is every recipe's total
        target = out / f"mix-{recipe}"
        args = ["mix", "--pages", store.root, "--run", run, "--mined", out / "mined", "--recipe", recipe]
        try:
            docrerank(*args, "--out", target, "--overwrite", *(["--total", total] if total else []))
        except subprocess.CalledProcessError:
            console.print(f"[yellow]recipe {recipe}: no mixture can be made from these sources; left out[/yellow]")
            continue
        summary = json.loads((target / "provenance.json").read_text())["summary"]
        if total is None:
            total = summary["examples"]
        elif summary["examples"] < total:
            console.print(f"[yellow]recipe {recipe}: {summary['examples']} examples, fewer than {total}; left out")
            continue
        mixtures[recipe] = target
    return mixtures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "quality")
    parser.add_argument("--store", type=Path, default=ROOT / "runs" / "demo" / "pages")
    parser.add_argument("--k", type=int, default=10, help="first-stage pages each reranker re-scores")
    parser.add_argument("--first-stages", default="bm25,dense")
    parser.add_argument("--epochs", type=float, default=3)
    parser.add_argument("--llm-negatives", action="store_true", help="free-form negatives from the embedded model")
    parser.add_argument("--zero-shot", action="store_true", help="add the embedded LLM as a zero-shot reranker")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    store = sample_store(args.store)
    sets = test_sets(store, args.out)
    rerankers: dict[str, tuple[Reranker, str]] = {"untrained": (CrossEncoderReranker(), "untrained")}
    for recipe, data in training_data(store, args.out, args.llm_negatives).items():
        model = args.out / f"ce-{recipe}"
        if not (model / "reranker.json").exists():
            docrerank("train", "--data", data, "--out", model, "--held-out", "0", "--epochs", args.epochs,
                      "--batch", "4", "--lr", "2e-4")  # fmt: skip
        rerankers[recipe] = (Reranker.load(model), str(model))
    if args.zero_shot:
        from docrerank.backends import load_backend
        from docrerank.pipeline.config import PipelineConfig
        from docrerank.rerankers import LLMReranker

        backend = PipelineConfig().backends["verifier"]
        rerankers["zero-shot LLM"] = (LLMReranker(load_backend(backend)), backend.model_dump_json())

    cache = ScoreCache(args.out / "scores.sqlite")
    table = Table(title=f"Quality benchmark: NDCG@5 on hand-written questions of the test documents (top {args.k})")
    for column in ("first stage", "queries", "system", "NDCG@5", "Δ vs first stage", "Δ vs mined-only"):
        table.add_column(column)
    results = {}
    for first_stage in args.first_stages.split(","):
        retriever = make_retriever(first_stage, store)
        for name, benchmark in sets.items():
            queries = benchmark.judged_queries
            rankings = retriever.search([benchmark.queries[q] for q in queries], args.k)
            with progress_bar() as bar:
                task = bar.add_task(f"{first_stage} / {name}", total=len(queries) * len(rerankers))
                result = evaluate(benchmark, dict(zip(queries, rankings, strict=True)), rerankers, args.k,
                                  first_stage, cache, lambda t=task: bar.advance(t))  # fmt: skip
            by_name = {s.name: s.values[PRIMARY] for s in result.systems}
            results[f"{first_stage}/{name}"] = {s: mean(v) for s, v in by_name.items()}
            first = by_name[first_stage]
            for system, values in by_name.items():
                cells = [f"{mean(values):.3f}"]
                for baseline in (first, by_name.get("mined-only")):
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
