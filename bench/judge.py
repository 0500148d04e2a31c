"""The judge's page view, whole against focused (``prompts.focus``): speed and quality in one session.

1. Zero-shot reranking pairs/s (the reranker's and the teacher's case: each page read for one question):
   one labeled question on each of ``--rerank-pages`` pages, scored by the LLM reranker with each view, no
   cache, the model loaded once before either clock starts.
2. Verifier seconds a pair on the labeled pairs of ``--timing-pages`` pages, empty cache. Each page is asked
   six questions here, so the whole view evaluates a page's text once for all of them and the focused view
   does not: the case where focusing can lose.
3. Verifier quality on the labeled pairs (bench/data/verifier-pairs.jsonl) per view: ROC AUC, precision and
   recall of accepted negatives at the default threshold, and the accepted-negative precision at recall 0.5
   out of fold (the threshold reaching recall 0.5 on one half of the pages, applied to the other half, both
   halves pooled) with a bootstrap 95% interval over pages. Answers are cached per model in
   ``--cache-dir`` (the whole view shares bench/verify.py's cache: same requests).

    python bench/judge.py                         # the embedded 1.5B; ~40 min on 2 cores the first time
    python bench/judge.py --max-pages 12          # quality on the first 12 labeled pages only
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from common import sample_store  # bench/common.py: scripts run as `python bench/NAME.py`
from docrerank.backends import load_backend
from docrerank.pipeline.config import PipelineConfig
from docrerank.pipeline.pairs import verifier_for, verify_pairs
from docrerank.pipeline.verifier_eval import evaluate_verifier, negative_scores, precision_recall
from docrerank.rerankers import LLMReranker
from verify import PAIRS, ROOT, resolve_pairs  # bench/verify.py

console = Console(width=200)
VIEWS = ("whole", "focused")


def config_for(model: str, view: str, focus_chars: int) -> PipelineConfig:
    backend = {"type": "llamacpp", "model": model, "n_ctx": 4096}
    verification = {"page_view": view, "focus_chars": focus_chars} if view == "focused" else {}
    return PipelineConfig.model_validate(
        {"backends": {"generator": backend, "verifier": backend}, "negatives_verified": verification}
    )


def rerank_pairs_per_second(model: str, pairs, store, pages: int, focus_chars: int) -> dict[str, float]:
    """Pairs a second of the zero-shot reranker per view, one question on each of ``pages`` pages."""
    first = {}
    for pair in pairs:
        first.setdefault(pair.page_id, pair)
    chosen = list(first.values())[:pages]
    backend = load_backend({"type": "llamacpp", "model": model, "n_ctx": 4096})
    _ = backend.llm  # loaded before the clocks start
    rates = {}
    for view in VIEWS:
        reranker = LLMReranker(backend, page_view=view, focus_chars=focus_chars)
        started = time.perf_counter()
        reranker.score([(p.query, store[p.page_id]) for p in chosen])
        rates[view] = len(chosen) / (time.perf_counter() - started)
    return rates


def verifier_seconds_per_pair(model: str, pairs, store, pages: int, focus_chars: int, tmp: Path) -> dict[str, float]:
    page_ids = sorted({p.page_id for p in pairs})[:pages]
    subset = [p for p in pairs if p.page_id in page_ids]
    seconds = {}
    for view in VIEWS:
        verifier = verifier_for(config_for(model, view, focus_chars), "unanswerable", tmp / f"timing-{view}.sqlite")
        _ = verifier.backend.llm
        started = time.perf_counter()
        verify_pairs(subset, store, verifier, "unanswerable")
        seconds[view] = (time.perf_counter() - started) / len(subset)
    return seconds


def precision_at_recall_out_of_fold(rows: list[dict], recall: float, resamples: int = 2000) -> dict:
    """Accepted-negative precision at ``recall``: the lowest threshold whose recall on one half of the pages
    reaches ``recall``, applied to the other half, both halves pooled; with a bootstrap interval over pages
    (pages resampled with replacement, their out-of-fold decisions kept)."""
    pages = sorted({r["page_id"] for r in rows})
    decided: list[tuple[str, bool, bool]] = []  # (page, truly unanswerable, accepted)
    for held_out in (set(pages[0::2]), set(pages[1::2])):
        unans, p_max, vetoed = negative_scores([r for r in rows if r["page_id"] not in held_out])
        threshold = 1.0
        for t in sorted(set(p_max)) + [1.0]:
            accepted = [p < t and not v for p, v in zip(p_max, vetoed, strict=True)]
            if (precision_recall(unans, accepted)["recall"] or 0.0) >= recall:
                threshold = t
                break
        test = [r for r in rows if r["page_id"] in held_out]
        unans, p_max, vetoed = negative_scores(test)
        decided += [
            (r["page_id"], u, p < threshold and not v) for r, u, p, v in zip(test, unans, p_max, vetoed, strict=True)
        ]
    pooled = precision_recall([u for _, u, _ in decided], [a for _, _, a in decided])
    by_page: dict[str, list[tuple[bool, bool]]] = {}
    for page, u, a in decided:
        by_page.setdefault(page, []).append((u, a))
    rng, estimates = random.Random(0), []
    for _ in range(resamples):
        sample = [item for page in rng.choices(pages, k=len(pages)) for item in by_page[page]]
        value = precision_recall([u for u, _ in sample], [a for _, a in sample])["precision"]
        if value is not None:
            estimates.append(value)
    estimates.sort()
    low, high = estimates[int(0.025 * len(estimates))], estimates[int(0.975 * len(estimates)) - 1]
    return {**pooled, "ci95": [low, high]}


def fmt(value) -> str:
    return "-" if value is None else f"{value:.3f}" if isinstance(value, float) else str(value)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="qwen2.5-coder-1.5b-instruct")
    parser.add_argument("--store", type=Path, default=ROOT / "runs" / "demo" / "pages")
    parser.add_argument("--cache-dir", type=Path, default=ROOT / "runs" / "bench-verify")
    parser.add_argument("--focus-chars", type=int, default=1200)
    parser.add_argument("--rerank-pages", type=int, default=12, help="pages timed for zero-shot reranking (0: none)")
    parser.add_argument("--timing-pages", type=int, default=2, help="pages timed for verification (0: none)")
    parser.add_argument("--max-pages", type=int, default=0, help="labeled pages for the quality rows (0: all 35)")
    parser.add_argument("--skip-quality", action="store_true")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()

    store = sample_store(args.store)
    pairs = resolve_pairs(PAIRS, store)
    report: dict = {"model": args.model, "focus_chars": args.focus_chars}
    if args.rerank_pages:
        rates = rerank_pairs_per_second(args.model, pairs, store, args.rerank_pages, args.focus_chars)
        report["rerank_pairs_per_second"] = rates
        console.print(
            f"zero-shot reranking, {args.rerank_pages} pages, one question each: whole {rates['whole']:.3f} pairs/s, "
            f"focused {rates['focused']:.3f} pairs/s ({rates['focused'] / rates['whole']:.2f}x)"
        )
    if args.timing_pages:
        tmp = args.cache_dir / "timing"
        for path in tmp.glob("timing-*.sqlite*"):
            path.unlink()
        tmp.mkdir(parents=True, exist_ok=True)
        seconds = verifier_seconds_per_pair(args.model, pairs, store, args.timing_pages, args.focus_chars, tmp)
        report["verifier_seconds_per_pair"] = seconds
        console.print(
            f"verification, {args.timing_pages} pages of six questions: whole {seconds['whole']:.2f} s/pair, "
            f"focused {seconds['focused']:.2f} s/pair ({seconds['whole'] / seconds['focused']:.2f}x the pairs/s)"
        )
    if args.skip_quality:
        console.print_json(json.dumps(report))
        return
    if args.max_pages:
        kept = sorted({p.page_id for p in pairs})[: args.max_pages]
        pairs = [p for p in pairs if p.page_id in kept]
    table = Table(title=f"verifier on {len(pairs)} labeled pairs ({args.model})", title_justify="left")
    for column in ("view", "AUC", "precision", "recall", "P at recall 0.5, out of fold [95% CI]"):
        table.add_column(column)
    cache = args.cache_dir / args.model / "cache.sqlite"
    for view in VIEWS:
        config = config_for(args.model, view, args.focus_chars)
        verifier = verifier_for(config, "unanswerable", cache)
        results = verify_pairs(
            pairs, store, verifier, "unanswerable", evidence_rejects=config.negatives_verified.evidence_rejects
        )
        rows = [r.model_dump(mode="json") for r in results]
        quality = evaluate_verifier(rows)
        at_half = precision_at_recall_out_of_fold(rows, 0.5)
        report[view] = {"roc_auc": quality["roc_auc"], "accepted_negatives": quality["accepted_negatives"],
                        "precision_at_recall_0.5": at_half}  # fmt: skip
        negatives = quality["accepted_negatives"]
        low, high = at_half["ci95"]
        table.add_row(
            view, fmt(quality["roc_auc"]), fmt(negatives["precision"]), fmt(negatives["recall"]),
            f"{fmt(at_half['precision'])} (recall {fmt(at_half['recall'])}) [{low:.3f}, {high:.3f}]",
        )  # fmt: skip
    console.print(table)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
