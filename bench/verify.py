"""How well, and how fast, the embedded verifier judges answerability, on the project's labeled pairs.

For each embedded model (Qwen2.5-Coder 0.5B and 1.5B) and each verifier configuration it prints the
numbers of ``docrerank evaluate-verifier``: accepted-negative precision and recall, accuracy, ROC AUC, the
prompts' agreement, and the threshold that reaches the target precision, both in-sample and out of fold
(chosen on half of the pages, applied to the other half, and the other way round), plus seconds per pair
(timed with the two default prompts; a one-prompt configuration is shown at half of that).

Every configuration runs through the pipeline's own verifier (``verify_pairs`` with a ``PipelineConfig``);
their requests overlap, so a response cache per model (``--cache-dir``) answers all but the first. Seconds
per pair are timed separately on the first ``--timing-pages`` pages with an empty cache, so a rerun
measures again; ratios against the 1.5B are printed beside them (same session, same machine).

    python bench/verify.py                      # both models; ~45 min the first time on 2 cores, then cached
    python bench/verify.py --models qwen2.5-coder-0.5b-instruct --timing-pages 2
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from common import sample_store  # bench/common.py: scripts run as `python bench/NAME.py`
from docrerank.pages import PageStore
from docrerank.pipeline.config import PipelineConfig
from docrerank.pipeline.pairs import PairInput, parse_pairs, verifier_for, verify_pairs
from docrerank.pipeline.verifier_eval import (
    evaluate_verifier,
    negative_scores,
    precision_recall,
    threshold_for_precision,
)

ROOT = Path(__file__).resolve().parents[1]
PAIRS = ROOT / "bench" / "data" / "verifier-pairs.jsonl"
MODELS = ["qwen2.5-coder-0.5b-instruct", "qwen2.5-coder-1.5b-instruct"]
SHORT = {MODELS[0]: "0.5B", MODELS[1]: "1.5B"}
console = Console(width=200)


def resolve_pairs(path: Path, store: PageStore) -> list[PairInput]:
    """The labeled pairs, their page ids mapped through (file, page index) when this store's ids differ."""
    by_place = {
        (Path(p.source_path).parent.name + "/" + Path(p.source_path).name, p.page_index): p.page_id for p in store
    }
    lines = []
    for line in path.read_text().splitlines():
        row = json.loads(line)
        if row["page_id"] not in store:
            row["page_id"] = by_place.get((row["file"], row["page_index"]), row["page_id"])
        lines.append(json.dumps(row))
    pairs, errors = parse_pairs(lines, str(path), store)
    for error in errors:
        console.print(f"[yellow]skipped[/yellow] {error}")
    return pairs


def config_for(model: str, **negatives_verified) -> PipelineConfig:
    backend = {"type": "llamacpp", "model": model, "n_ctx": 4096}
    return PipelineConfig.model_validate(
        {
            "backends": {"generator": backend, "verifier": backend},
            "negatives_verified": negatives_verified,
        }
    )


def run(config: PipelineConfig, pairs: list[PairInput], store: PageStore, cache: Path) -> list[dict]:
    verifier = verifier_for(config, "unanswerable", cache)
    results = verify_pairs(
        pairs, store, verifier, "unanswerable", evidence_rejects=config.negatives_verified.evidence_rejects
    )
    return [r.model_dump(mode="json") for r in results]


def seconds_per_pair(model: str, pairs: list[PairInput], store: PageStore, pages: int) -> float:
    """Wall time per pair with an empty cache (model loaded first), on the pairs of the first ``pages`` pages."""
    page_ids = sorted({p.page_id for p in pairs})[:pages]
    subset = [p for p in pairs if p.page_id in page_ids]
    with tempfile.TemporaryDirectory() as tmp:
        verifier = verifier_for(config_for(model), "unanswerable", Path(tmp) / "cache.sqlite")
        _ = verifier.backend.llm  # load the model before the clock starts
        started = time.perf_counter()
        verify_pairs(subset, store, verifier, "unanswerable")
        return (time.perf_counter() - started) / len(subset)


def out_of_fold(rows: list[dict], target: float) -> dict:
    """Threshold chosen on one half of the pages, applied to the other half; both halves pooled."""
    pages = sorted({r["page_id"] for r in rows})
    truth, accepted = [], []
    for held_out in (set(pages[0::2]), set(pages[1::2])):
        unanswerable, p_yes_max, vetoed = negative_scores([r for r in rows if r["page_id"] not in held_out])
        best = threshold_for_precision(unanswerable, p_yes_max, target, vetoed)
        threshold = best["threshold"] if best else 0.0
        unanswerable, p_yes_max, vetoed = negative_scores([r for r in rows if r["page_id"] in held_out])
        truth += unanswerable
        accepted += [p < threshold and not v for p, v in zip(p_yes_max, vetoed, strict=True)]
    return precision_recall(truth, accepted)


def fmt(value) -> str:
    return "-" if value is None else f"{value:.3f}" if isinstance(value, float) else str(value)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--pairs", type=Path, default=PAIRS)
    parser.add_argument("--store", type=Path, default=ROOT / "runs" / "demo" / "pages")
    parser.add_argument("--cache-dir", type=Path, default=ROOT / "runs" / "bench-verify")
    parser.add_argument("--target", type=float, default=0.95)
    parser.add_argument("--timing-pages", type=int, default=3, help="pages timed with an empty cache (0: none)")
    parser.add_argument("--json", type=Path, help="also write every report here")
    args = parser.parse_args()

    store = sample_store(args.store)
    pairs = resolve_pairs(args.pairs, store)
    n_unans = sum(not p.answerable for p in pairs)
    console.print(f"{len(pairs)} labeled pairs on {len({p.page_id for p in pairs})} pages; {n_unans} unanswerable")
    default = PipelineConfig().negatives_verified.threshold
    variants = {  # name: (negatives_verified settings, models it runs for: None = all)
        "paper: both prompts no (P(yes) < 0.5)": ({"threshold": 0.5, "evidence_rejects": False}, None),
        "+ evidence veto": ({"threshold": 0.5}, None),
        f"default: P(yes) < {default} + evidence veto": ({}, None),
        "few-shot prompt alone (verify_shots), < 0.5": ({"templates": ["verify_shots"], "threshold": 0.5}, [MODELS[1]]),
    }
    table = Table(title=f"verifier on the labeled pairs (target precision {args.target})", title_justify="left")
    columns = ("model", "configuration", "s/pair", "AUC", "agree", "precision", "recall", "accuracy")
    for column in (*columns, f"t for {args.target} (P, R) in-sample", "out of fold P / R"):
        table.add_column(column, overflow="fold")
    reports: dict = {}
    timing: dict[str, float] = {}
    at_half: dict[str, list[dict]] = {}
    for model in args.models.split(","):
        if args.timing_pages:
            timing[model] = seconds_per_pair(model, pairs, store, args.timing_pages)
        cache = args.cache_dir / model / "cache.sqlite"
        for name, (settings, models) in variants.items():
            if models is not None and model not in models:
                continue
            rows = run(config_for(model, **settings), pairs, store, cache)
            if name == "+ evidence veto":
                at_half[model] = rows
            report = evaluate_verifier(rows, args.target)
            fold = out_of_fold(rows, args.target)
            reports[f"{model} | {name}"] = {**report, "out_of_fold": fold, "seconds_per_pair": timing.get(model)}
            best = report["threshold_for_target"]
            neg = report["accepted_negatives"]
            prompts = len(settings.get("templates", ("verify_a", "verify_b")))
            seconds = timing[model] * prompts / 2 if model in timing else None  # timed with the 2 default prompts
            table.add_row(
                SHORT.get(model, model),
                name,
                fmt(seconds),
                fmt(report["roc_auc"]),
                fmt(report["prompt_agreement"]),
                fmt(neg["precision"]),
                fmt(neg["recall"]),
                fmt(report["accuracy"]),
                f"{best['threshold']:.3f} ({best['precision']:.2f}, {best['recall']:.2f})" if best else "none",
                f"{fmt(fold['precision'])} / {fmt(fold['recall'])}",
            )
    if len(at_half) == 2:  # a second model as a cross-check: a negative must be accepted by both
        small, large = (at_half[m] for m in MODELS)
        both = precision_recall(
            [not r["answerable"] for r in large],
            [a["accepted"] and b["accepted"] for a, b in zip(small, large, strict=True)],
        )
        table.add_row(
            "0.5B and 1.5B",
            "cross-check: both accept (P(yes) < 0.5 + veto)",
            "-",
            "-",
            "-",
            fmt(both["precision"]),
            fmt(both["recall"]),
            "-",
            "-",
            "-",
        )
    console.print(table)
    if len(timing) > 1 and MODELS[1] in timing:
        ratios = ", ".join(f"{m}: {t / timing[MODELS[1]]:.2f}" for m, t in timing.items())
        console.print(f"seconds per pair relative to the 1.5B (same session): {ratios}")
    if args.json:
        args.json.write_text(json.dumps(reports, indent=2) + "\n")


if __name__ == "__main__":
    main()
