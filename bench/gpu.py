"""The paper's reranker on a GPU: LoRA training steps/s and batched scoring pairs/s, in one short run.

A lent GPU machine has torch, transformers and peft, but no model weights, no network, and not this
project's other dependencies; so the work is in two steps:

    python bench/gpu.py pack       # here: writes .gpukit/ (~22 MiB): the Qwen2 tokenizer, 32 training groups
                                   # of the committed training set with their page images, and the wheels
                                   # of docrerank's dependencies the GPU image lacks (Python 3.12)
    # there, in the repository root (the device tool: carry [".gpukit"]):
    python3 -m pip install -q --no-index --no-deps --target /tmp/site .gpukit/wheels/*.whl \\
      && PYTHONPATH=/tmp/site:src python3 bench/gpu.py run --out $OUT

``run`` draws Qwen2-VL-2B-Instruct's architecture with random weights (seeded; the published weights cannot
be had there, and the speed does not depend on their values), wraps it in docrerank's ``TrueFalseReranker``
with the paper's LoRA (r 32 on the language model's seven projections), and measures, on the kit's real page
images (up to 1,024 image tokens a page):

- training: ``docrerank.training.train`` for ``--steps`` steps of 8 groups of 1 positive + 3 negative
  queries (the paper's batch: 32 pairs), after 2 warm-up steps, with its peak GPU memory;
- scoring: the same model's P(True) of 128 pairs (``--pairs``) one pair at a time, then ``--batch-sizes`` at a
  time.

It prints a table and writes ``OUT/gpu.json``; sized for under 8 minutes on an H100 (not yet run on one). With
``--tiny`` the same code runs the ~10M-parameter test model on whatever is there (a CPU: a check that the
script works; its figures say nothing of a GPU).
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
KIT = ROOT / ".gpukit"
GROUPS = "groups.jsonl"
TRAIN_BATCH = 8  # groups a step, each 1 positive + NEGATIVES negative queries: the paper's 8 + 24
NEGATIVES = 3
SCORED_PAIRS = 128
# docrerank's dependencies that the GPU image (KINDS.md's package list) lacks, at the versions tested here
WHEELS = ("pydantic", "pydantic-core", "annotated-types", "typing-inspection", "json-repair", "pypdfium2", "tenacity")
PLATFORMS = ("manylinux_2_17_x86_64", "manylinux2014_x86_64", "manylinux_2_28_x86_64", "manylinux_2_27_x86_64")


# -- here: the kit ------------------------------------------------------------------------------------------


def _committed_set(target: Path) -> Path:
    """The training set's run directory as committed (a generation may be extending the working copy)."""
    archive = subprocess.run(
        ["git", "archive", "HEAD", "bench/data/trainset/run"], cwd=ROOT, capture_output=True, check=True
    )
    subprocess.run(["tar", "-x", "-C", str(target)], input=archive.stdout, check=True)
    return target / "bench" / "data" / "trainset" / "run"


def _write_groups(kit: Path, store_path: Path, count: int) -> int:
    """``count`` positives of the committed set that have at least NEGATIVES selected negative queries, each
    with them and its page's text and image (copied into the kit), as GROUPS; how many were written."""
    from common import sample_store  # bench/common.py: run as `python bench/gpu.py`
    from docrerank.pipeline.export import page_rows, read_selected

    store = sample_store(store_path)
    with tempfile.TemporaryDirectory() as scratch:
        records = read_selected(_committed_set(Path(scratch)))
    (kit / "pages").mkdir(parents=True, exist_ok=True)
    written = 0
    with (kit / GROUPS).open("w") as out:
        for row in page_rows(records, store, "bench/gpu.py"):
            image = Path("pages") / f"{row['page_id']}.png"
            for query, negatives in zip(row["positive_queries"], row["negative_queries"], strict=True):
                if written == count or len(negatives) < NEGATIVES:
                    continue
                shutil.copyfile(row["image_path"], kit / image)
                group = {"query": query, "negative_queries": negatives, "page_id": row["page_id"],
                         "doc_id": row["doc_id"], "text": row["page_text"], "image": str(image)}  # fmt: skip
                out.write(json.dumps(group) + "\n")
                written += 1
    return written


def _download_wheels(kit: Path) -> list[str]:
    """The WHEELS at this environment's versions, for CPython 3.12 on x86-64 Linux (the GPU image's)."""
    from importlib.metadata import version

    wanted = [f"{name}=={version(name)}" for name in WHEELS]
    platforms = [option for name in PLATFORMS for option in ("--platform", name)]
    command = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:"]
    command += ["--python-version", "3.12", "--implementation", "cp", *platforms, "-d", str(kit / "wheels")]
    subprocess.run([*command, *wanted], check=True)
    return wanted


def pack(kit: Path, store_path: Path, count: int) -> None:
    from docrerank.testing.tiny_models import save_tokenizer

    if kit.exists():
        shutil.rmtree(kit)
    kit.mkdir(parents=True)
    save_tokenizer(kit / "tokenizer")
    groups = _write_groups(kit, store_path, count)
    wheels = _download_wheels(kit)
    size = sum(f.stat().st_size for f in kit.rglob("*") if f.is_file()) / 2**20
    print(
        f"{kit}: the Qwen2 tokenizer, {groups} training groups with their page images, wheels {wheels}; {size:.1f} MiB"
    )


# -- there: the measurements --------------------------------------------------------------------------------


def _groups(kit: Path):
    from docrerank.backends.messages import ImagePart
    from docrerank.pages.content import PageContent
    from docrerank.training.data import TrainingGroup

    groups = []
    for line in (kit / GROUPS).read_text().splitlines():
        row = json.loads(line)
        page = PageContent(text=row["text"], image=ImagePart.from_path(kit / row["image"]), page_id=row["page_id"])
        groups.append(TrainingGroup(row["query"], page, row["doc_id"], tuple(row["negative_queries"])))
    return groups


def _synchronize() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def _training(reranker, groups, out: Path, steps: int) -> dict:
    """Steps/s of ``train`` on the paper's batches, after a separate warm-up run (kernels, allocator)."""
    import torch

    from docrerank.training.trainer import TrainSettings, train

    def run(name: str, count: int):
        settings = TrainSettings(
            max_steps=count,
            groups_per_batch=TRAIN_BATCH,
            negatives=NEGATIVES,
            held_out=0,
            warmup=0,
            save_steps=10**6,
        )
        _synchronize()
        return train(reranker, groups, out / name, settings)

    run("warm-up", 2)
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    summary = run("measured", steps)
    pairs = TRAIN_BATCH * (1 + NEGATIVES)
    return {
        "steps": summary.steps,
        "seconds": summary.seconds,
        "steps_per_second": round(summary.steps / summary.seconds, 3),
        "pairs_per_second": round(summary.steps * pairs / summary.seconds, 1),
        "peak_gpu_memory_gib": round(torch.cuda.max_memory_allocated() / 2**30, 1)
        if torch.cuda.is_available()
        else None,
    }


def _scoring(reranker, groups, batch_sizes: list[int], count: int) -> list[dict]:
    """Pairs/s of ``score`` at each batch size, on the same pairs (the first size also warms up)."""
    pairs = [(query, group.page) for group in groups for query in (group.query, *group.negative_queries)]
    pairs = (pairs * (count // len(pairs) + 1))[:count]
    reranker.score(pairs[:4])  # warm-up
    rows = []
    for size in batch_sizes:
        reranker.backend.config = reranker.backend.config.model_copy(update={"batch_size": size})
        _synchronize()
        started = time.perf_counter()
        scores = reranker.score(pairs)
        _synchronize()
        seconds = time.perf_counter() - started
        if not all(score >= 0 for score in scores):
            raise RuntimeError(f"batch size {size}: some pairs could not be scored")
        rows.append({"batch_size": size, "pairs": len(pairs), "seconds": round(seconds, 2),
                     "pairs_per_second": round(len(pairs) / seconds, 1)})  # fmt: skip
    for row in rows:
        row["speedup"] = round(row["pairs_per_second"] / rows[0]["pairs_per_second"], 2)
    return rows


def run(kit: Path, out: Path, tiny: bool, steps: int, batch_sizes: list[int], pairs: int = SCORED_PAIRS) -> dict:
    import peft
    import torch
    import transformers

    from docrerank.rerankers.true_false import TrueFalseReranker
    from docrerank.testing.tiny_models import QWEN2VL_2B, TINY_QWEN2VL, build_qwen2vl

    cuda = torch.cuda.is_available()
    device = "cuda" if cuda else "cpu"
    dtype = "bfloat16" if cuda and torch.cuda.is_bf16_supported() else "float32"
    architecture = TINY_QWEN2VL if tiny else QWEN2VL_2B
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as scratch:
        folder = build_qwen2vl(Path(scratch) / "model", architecture, kit / "tokenizer", device, dtype)
        built = time.perf_counter() - started
        reranker = TrueFalseReranker(model=str(folder), device="auto", dtype="auto", lora=True)
        groups = _groups(kit)
        training = _training(reranker, groups, Path(scratch) / "train", steps)
        scoring = _scoring(reranker, groups, [1, *batch_sizes], pairs)
    result = {
        "model": "tiny Qwen2-VL (test model)" if tiny else "Qwen2-VL-2B architecture, random weights",
        "parameters": sum(p.numel() for p in reranker.model.parameters()),
        "trainable_parameters": sum(p.numel() for p in reranker.model.parameters() if p.requires_grad),
        "device": torch.cuda.get_device_name() if cuda else platform.processor() or "cpu",
        "dtype": dtype,
        "versions": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "peft": peft.__version__,
        },
        "groups": len(groups),
        "model_drawn_seconds": round(built, 1),
        "training": training,
        "scoring": scoring,
        "wall_seconds": round(time.perf_counter() - started, 1),
    }
    (out / "gpu.json").write_text(json.dumps(result, indent=1) + "\n")
    return result


def report(result: dict) -> None:
    training = result["training"]
    size, trained = result["parameters"] / 1e9, result["trainable_parameters"] / 1e6
    print(f"{result['model']} ({size:.2f}B parameters, {trained:.1f}M trained by LoRA) on {result['device']}, "
          f"{result['dtype']}; {result['versions']}")  # fmt: skip
    print(f"LoRA training, {TRAIN_BATCH} groups of 1 + {NEGATIVES} a step: {training['steps_per_second']} steps/s "
          f"({training['pairs_per_second']} pairs/s; {training['steps']} steps in {training['seconds']} s; peak GPU "
          f"memory {training['peak_gpu_memory_gib']} GiB)")  # fmt: skip
    print("| pairs a batch | pairs/s | × one at a time |\n|---|---|---|")
    for row in result["scoring"]:
        print(f"| {row['batch_size']} | {row['pairs_per_second']} | {row['speedup']}× |")
    print(
        f"wall time {result['wall_seconds']} s (the random model drawn and saved in {result['model_drawn_seconds']} s)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    packing = commands.add_parser("pack", help="here: write the kit a GPU machine needs")
    packing.add_argument("--kit", type=Path, default=KIT)
    packing.add_argument("--store", type=Path, default=ROOT / "runs" / "demo" / "pages")
    packing.add_argument("--groups", type=int, default=32)
    running = commands.add_parser("run", help="there: train and score, print the figures")
    running.add_argument("--kit", type=Path, default=KIT)
    running.add_argument("--out", type=Path, default=ROOT / "runs" / "gpu")
    running.add_argument("--tiny", action="store_true", help="the ~10M-parameter test model (a check on a CPU)")
    running.add_argument("--steps", type=int, default=20)
    running.add_argument("--batch-sizes", default="8,16,32", help="scored pairs a forward pass, beside 1")
    running.add_argument("--pairs", type=int, default=SCORED_PAIRS, help="pairs scored at each batch size")
    args = parser.parse_args()
    if args.command == "pack":
        pack(args.kit, args.store, args.groups)
    else:
        sizes = [int(size) for size in args.batch_sizes.split(",") if size]
        report(run(args.kit, args.out, args.tiny, args.steps, sizes, args.pairs))


if __name__ == "__main__":
    main()
