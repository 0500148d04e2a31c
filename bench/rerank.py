"""Reranker benchmarks, each a ratio against a reference measured in the same run.

1. Text scoring: pairs/s of ``CrossEncoderReranker.score`` divided by pairs/s of sentence-transformers'
   ``CrossEncoder.predict`` on the same model object and the same (query, page text) pairs, the two
   alternated, best of ``--repeats``. Measured twice: with one chunk a page (the same work as ``predict``,
   which truncates at 256 tokens; goal >= 1.0), and as shipped, reading the whole page by overlapping chunks
   (more work: the chunks a pair are printed beside it).
2. VLM batching: pages/s of the True/False reranker with length-sorted padded batches of 8 divided by pages/s
   one page at a time, on the tiny random Qwen2-VL (the real model code; no VLM weights are at hand here) over
   real sample pages. On CPU here; on a GPU where one is (goal >= 5x there).
3. ONNX Runtime: pairs/s of the cross-encoder on ONNX Runtime (fp32, and int8 weights by dynamic
   quantization) divided by pairs/s of the same reranker on PyTorch, whole pages by chunks, the same pairs,
   alternated (goal >= 2x at no loss of ranking quality: `docrerank evaluate ... --rerankers
   saved=DIR,saved=DIR@onnx,saved=DIR@onnx-int8` measures that on the quality benchmark). ``--model`` names a
   trained folder (default: the bundled MiniLM with a seeded head: the same work).
4. Training: pairs/s of ``docrerank train``'s cross-encoder step (each pair scored over all its chunks to find
   the best one, then the loss on that chunk) divided by pairs/s of sentence-transformers' own
   ``CrossEncoderTrainer`` with its ``BinaryCrossEntropyLoss`` on the first 256 tokens of the same pairs.

The pairs are the hand-labeled queries of ``bench/data/verifier-pairs.jsonl`` on the sample documents' pages.
Absolute rates depend on the machine and are printed only beside the ratios.

    python bench/rerank.py            # ~12 min on 2 cores
    python bench/rerank.py --quick    # ~2 min
    python bench/rerank.py --only onnx [--model DIR]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from common import sample_store
from docrerank.pages.content import PageContent
from docrerank.rerankers import CrossEncoderReranker, Reranker, TrueFalseReranker
from docrerank.training import TrainingGroup
from docrerank.training.trainer import TrainSettings, train

ROOT = Path(__file__).resolve().parent.parent
PAIRS = ROOT / "bench" / "data" / "verifier-pairs.jsonl"
console = Console(width=140)


def labeled_pairs(store, limit: int) -> list[tuple[str, PageContent, bool]]:
    """(query, page with text and image, answerable) of the labeled set, in file order."""
    rows = [json.loads(line) for line in PAIRS.read_text().splitlines() if line.strip()][:limit]
    pages = {}
    for row in rows:
        if row["page_id"] not in pages:
            pages[row["page_id"]] = PageContent.from_page(store[row["page_id"]], store, image=True)
    return [(row["query"], pages[row["page_id"]], row["answerable"]) for row in rows]


def rate(work, count: int, repeats: int) -> float:
    """Best items/s of ``repeats`` runs of ``work``."""
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        work()
        best = min(best, time.perf_counter() - started)
    return count / best


def alternated(ours, reference, count: int, repeats: int) -> tuple[float, float]:
    """(ours/s, reference/s): one warm-up each, then alternated runs, the best of each."""
    ours(), reference()
    best_ours = best_reference = 0.0
    for _ in range(repeats):
        best_ours = max(best_ours, rate(ours, count, 1))
        best_reference = max(best_reference, rate(reference, count, 1))
    return best_ours, best_reference


def text_scoring(pairs, repeats: int) -> list[tuple[str, float, float, str]]:
    inputs = [(query, page) for query, page, _ in pairs]
    texts = [(query, page.text) for query, page in inputs]
    one_chunk = CrossEncoderReranker(chunk_words=10**6)  # one chunk a page, cut at max_length like predict
    chunked = CrossEncoderReranker()
    chunked.model = one_chunk.model  # the same model object for every line
    predict = lambda: one_chunk.model.predict(texts, batch_size=32, show_progress_bar=False)  # noqa: E731
    rows = []
    for name, reranker in (("one chunk a page (same work)", one_chunk), ("whole page by chunks", chunked)):
        ours, reference = alternated(lambda r=reranker: r.score(inputs), predict, len(inputs), repeats)
        chunks = len(reranker._chunks(inputs)[0]) / len(inputs)
        rows.append((name, ours, reference, f"{chunks:.1f} chunks a pair"))
    return rows


def onnx_scoring(pairs, repeats: int, model: str | None) -> list[tuple[str, float, float, str]]:
    import shutil

    inputs = [(query, page) for query, page, _ in pairs]
    with tempfile.TemporaryDirectory() as scratch:  # a copy: the ONNX files are written beside the model
        folder = Path(scratch) / "model"
        if model:
            shutil.copytree(model, folder)
        else:
            CrossEncoderReranker(seed=0).save(folder)
        on_torch = Reranker.load(folder)
        rows = []
        for runtime in ("onnx", "onnx-int8"):
            on_onnx = Reranker.load(folder).use_runtime(runtime)
            ours, reference = alternated(
                lambda r=on_onnx: r.score(inputs), lambda: on_torch.score(inputs), len(inputs), repeats
            )
            rows.append((f"{runtime} vs PyTorch", ours, reference, f"{on_onnx.batch_size} chunks a batch"))
    return rows


def vlm_batching(pairs, repeats: int, device: str) -> tuple[float, float]:
    from docrerank.testing.tiny_models import tiny_qwen2vl_path

    inputs = [(query, page) for query, page, _ in pairs]
    batched = TrueFalseReranker(model=str(tiny_qwen2vl_path()), batch_size=8, device=device)
    single = TrueFalseReranker(model=str(tiny_qwen2vl_path()), batch_size=1, device=device)
    single.model = batched.model
    return alternated(lambda: batched.score(inputs), lambda: single.score(inputs), len(inputs), repeats)


def training(pairs, steps: int) -> tuple[float, float]:
    """(our training pairs/s, sentence-transformers' CrossEncoderTrainer pairs/s), same pairs and batch."""
    import datasets
    from sentence_transformers.cross_encoder import (
        CrossEncoderTrainer,
        CrossEncoderTrainingArguments,
        losses,
    )

    by_page: dict[str, list] = {}
    for query, page, answerable in pairs:
        by_page.setdefault(page.page_id, []).append((query, page, answerable))
    groups = []
    for rows in by_page.values():
        negatives = tuple(q for q, _, answerable in rows if not answerable)
        groups += [TrainingGroup(q, p, p.page_id, negatives) for q, p, answerable in rows if answerable and negatives]
    settings = TrainSettings(
        max_steps=steps, groups_per_batch=4, held_out=0, save_steps=10**6, warmup=0, learning_rate=1e-4
    )
    flat = [(q, p.text, label) for g in groups for q, p, label in g.pairs(settings.negatives, settings.seed)]
    per_step = len(flat) / len(groups) * settings.groups_per_batch
    with tempfile.TemporaryDirectory() as tmp:
        summary = train(CrossEncoderReranker(), groups, Path(tmp) / "ours", settings)
        ours = summary.steps * per_step / summary.seconds
        reference = CrossEncoderReranker().model
        data = datasets.Dataset.from_dict(
            {"query": [q for q, _, _ in flat], "text": [t for _, t, _ in flat], "label": [float(x) for *_, x in flat]}
        )
        arguments = CrossEncoderTrainingArguments(
            output_dir=str(Path(tmp) / "reference"),
            per_device_train_batch_size=round(per_step),
            max_steps=steps,
            learning_rate=settings.learning_rate,
            save_strategy="no",
            report_to="none",
            use_cpu=True,
            disable_tqdm=True,
        )
        trainer = CrossEncoderTrainer(
            model=reference, args=arguments, train_dataset=data, loss=losses.BinaryCrossEntropyLoss(reference)
        )
        started = time.perf_counter()
        trainer.train()
        theirs = steps * round(per_step) / (time.perf_counter() - started)
    return ours, theirs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer pairs, repeats and steps (~2 min)")
    parser.add_argument("--store", type=Path, default=ROOT / "runs" / "demo" / "pages")
    parser.add_argument("--device", default="auto", help="device of the VLM line (auto: a GPU when there is one)")
    parser.add_argument("--only", choices=("onnx",), help="only this part")
    parser.add_argument("--model", help="a trained cross-encoder folder for the ONNX part")
    args = parser.parse_args()
    store = sample_store(args.store)
    pairs = labeled_pairs(store, 60 if args.quick else 160)
    repeats = 2 if args.quick else 3

    table = Table(title=f"Rerankers ({len(pairs)} labeled pairs of the sample documents)")
    for column in ("measure", "ours /s", "reference /s", "ratio", "note"):
        table.add_column(column)
    for name, ours, reference, note in onnx_scoring(pairs, repeats, args.model):
        table.add_row(f"text scoring, {name}", f"{ours:.1f}", f"{reference:.1f}", f"{ours / reference:.2f}", note)
    if args.only == "onnx":
        console.print(table)
        return
    for name, ours, reference, note in text_scoring(pairs, repeats):
        table.add_row(f"text scoring, {name}", f"{ours:.1f}", f"{reference:.1f}", f"{ours / reference:.2f}", note)
    batched, single = vlm_batching(pairs[:32] if args.quick else pairs[:64], repeats, args.device)
    table.add_row(
        "VLM pages, batches of 8 vs one at a time", f"{batched:.1f}", f"{single:.1f}", f"{batched / single:.2f}",
        "tiny random Qwen2-VL",
    )  # fmt: skip
    ours, theirs = training(pairs, 3 if args.quick else 8)
    table.add_row(
        "text training pairs", f"{ours:.1f}", f"{theirs:.1f}", f"{ours / theirs:.2f}", "vs CrossEncoderTrainer + BCE"
    )
    console.print(table)


if __name__ == "__main__":
    main()
