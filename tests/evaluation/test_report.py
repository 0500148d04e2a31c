"""The evaluation report, from real evaluation folders (`docrerank evaluate` on the BEIR fixture and on a page
store), with the data-quality section from real run outputs (tests/data/report), rendered by headless
Chromium: the table, the SVG charts and the page thumbnails are there and drawn."""

from __future__ import annotations

import base64
import io
import json
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest
from PIL import Image

from docrerank.errors import DocrerankError
from docrerank.evaluation import LABELS, MEASURES
from docrerank.evaluation.report import write_report
from docrerank.evaluation.results import mark
from tests.helpers import ROOT, invoke_cli, run_cli

BEIR = ROOT / "tests" / "data" / "beir-mini"
QUALITY = ROOT / "tests" / "data" / "report"
BAR_RGB, WORSE_RGB = (0x4C, 0x78, 0xA8), (0xE4, 0x57, 0x56)  # report.BAR, report.WORSE

pytestmark = pytest.mark.slow  # `docrerank evaluate` subprocesses with the CPU cross-encoder


class _Page(HTMLParser):
    """What a test reads of an HTML page: its elements (tag, attributes) and its table rows' cell texts."""

    def __init__(self, html: str):
        super().__init__()
        self.elements: list[tuple[str, dict[str, str]]] = []
        self.rows: list[tuple[str, list[str]]] = []  # (the tr's class, its cells)
        self._cell: list[str] | None = None
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        attrs = {k: v or "" for k, v in attrs}
        self.elements.append((tag, attrs))
        if tag == "tr":
            self.rows.append((attrs.get("class", ""), []))
        elif tag in ("td", "th"):
            self._cell = []

    def handle_startendtag(self, tag, attrs):
        self.elements.append((tag, {k: v or "" for k, v in attrs}))

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None and self.rows:
            self.rows[-1][1].append("".join(self._cell).strip())
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)

    def having(self, tag: str, cls: str) -> list[dict[str, str]]:
        return [a for t, a in self.elements if t == tag and cls in a.get("class", "").split()]


def _evaluate(out: Path, *args) -> Path:
    """``docrerank evaluate`` in this process (the report is under test, not the process: no second start of
    torch and the cross-encoder)."""
    result = invoke_cli(
        "evaluate", "--k", "5", "--first-stage", "bm25", "--rerankers", "cross-encoder", "--out", out, *args
    )
    assert result.exit_code == 0, (result.stdout[-2000:], result.exception)
    assert "report.html" in result.stdout
    return out


@pytest.fixture(scope="module")
def beir_eval(tmp_path_factory) -> Path:
    """The BEIR fixture, BM25 + the cross-encoder, with the data-quality inputs passed through."""
    out = tmp_path_factory.mktemp("report-beir") / "eval"
    quality = ["--report-run-dir", QUALITY / "run", "--verifier-report", QUALITY / "verifier"]
    return _evaluate(out, "--benchmark", BEIR, *quality, "--mined-report", QUALITY / "mined")


@pytest.fixture(scope="module")
def store_eval(vignette_store, tmp_path_factory) -> Path:
    """A page store (the 3 vignette pages) with a queries JSONL and TREC qrels."""
    folder = tmp_path_factory.mktemp("report-store")
    title, figure, monitoring = (p.page_id for p in sorted(vignette_store, key=lambda p: p.page_index))
    queries = {
        "s1": ("Which R package tests for structural change in linear regression models?", title),
        "s2": ("What does Figure 1 show about US personal income and consumption expenditures?", figure),
        "s3": ("At which observation was a structural break detected by the monitoring?", monitoring),
        "s4": ("Which error correction model is used for the consumption function?", figure),
    }
    (folder / "queries.jsonl").write_text(
        "".join(json.dumps({"query_id": q, "query": t}) + "\n" for q, (t, _) in queries.items())
    )
    (folder / "qrels.txt").write_text("".join(f"{q} 0 {page} 1\n" for q, (_, page) in queries.items()))
    args = ["--benchmark", vignette_store.root, "--queries", folder / "queries.jsonl", "--qrels", folder / "qrels.txt"]
    return _evaluate(folder / "eval", *args)


def _summary_rows(folder: Path) -> dict[str, list[str]]:
    """The table rows summary.json says the report must show: each system's means, the reranker's delta."""
    summary = json.loads((folder / "summary.json").read_text())
    first = next(iter(summary["systems"]))
    deltas = {c["system"]: c for c in summary["comparisons"] if c["baseline"] == first}
    rows = {}
    for name, means in summary["systems"].items():
        delta = f"{deltas[name]['delta']:+.3f}{mark(deltas[name]['p_value'])}" if name in deltas else ""
        rows[name] = [name, *(f"{means[m]:.3f}" for m in MEASURES), delta]
    return rows


def _check_sections(html: str, folders: list[Path]) -> None:
    """Each folder's section, in order: its table rows as summary.json has them, its NDCG@5 bar chart (a bar
    per system) and its histogram of per-query deltas (21 bins)."""
    sections = html.split('<section id="data-quality"')[0].split('<section class="benchmark"')[1:]
    assert len(sections) == len(folders)
    for folder, section in zip(folders, sections, strict=True):
        page = _Page(section)
        rows = {cells[0]: cells for cls, cells in page.rows if cls in ("first-stage", "reranker")}
        assert rows == _summary_rows(folder)
        assert len(page.having("svg", "bars")) == 1 and len(page.having("svg", "histogram")) == 1
        bars = page.having("rect", "bar")
        assert len(bars) == 2 + 21 and float(bars[0]["width"]) > 100  # the first stage's bar: NDCG@5 > 0.24


def _no_external_resources(html: str) -> None:
    assert "<script" not in html and "<link" not in html and "@import" not in html and "url(" not in html
    for reference in re.findall(r'(?:src|href)="([^"]*)"', html):
        assert reference.startswith(("data:", "#")), reference


def test_evaluate_writes_a_report_with_the_table_charts_and_the_queries(beir_eval):
    html = (beir_eval / "report.html").read_text()
    page = _Page(html)
    _check_sections(html, [beir_eval])
    header = next(cells for cls, cells in page.rows if cells and cells[0] == "system")
    assert header[1:6] == [LABELS[m] for m in MEASURES] and header[6] == "Δ NDCG@5 vs bm25"
    _no_external_resources(html)
    # the worst queries of the cross-encoder (it loses NDCG@5 on this benchmark), BEIR pages shown as text
    rows = [json.loads(line) for line in (beir_eval / "per_query.jsonl").read_text().splitlines()]
    ndcg = {(r["system"], r["query_id"]): r["nDCG@5"] for r in rows}
    queries = [q for system, q in ndcg if system == "bm25"]
    worse = sorted((ndcg["cross-encoder", q] - ndcg["bm25", q], q) for q in queries)
    shown = re.findall(r'<div class="query worse">\s*<p class="query-text"><b>(\w+)</b>', html)
    assert worse[0][0] < 0 and shown == [q for delta, q in worse[:5] if delta < 0]
    assert "Which function computes F statistics for every potential change point?" in html  # q1's text
    assert "strucchange: F statistics The function Fstats computes" in html  # d1, its relevant page, as text
    # the data-quality section from the real run outputs
    assert "Data quality" in html and "78.9%" in html and "12.5%" in html  # verifier precision, false negatives
    assert "<td>positives_verified</td><td>7</td><td>28</td><td>20%</td>" in html
    assert "llm:freeform" in html and "Hardness of 19 negatives" in html
    md = (beir_eval / "report.md").read_text()
    assert "| bm25 | 1.000 |" in md and "- **cross-encoder** vs bm25: NDCG@5 " in md
    assert "precision 78.9%" in md and "likely false negatives 12.5% of 24 judged" in md


def test_a_page_store_report_shows_page_images_as_thumbnails(store_eval):
    html = (store_eval / "report.html").read_text()
    page = _Page(html)
    _check_sections(html, [store_eval])
    _no_external_resources(html)
    thumbnails = page.having("img", "thumbnail")
    assert thumbnails, "no query changed NDCG@5: nothing to show"
    for attrs in thumbnails:
        data = attrs["src"].removeprefix("data:image/jpeg;base64,")
        image = Image.open(io.BytesIO(base64.b64decode(data)))
        assert image.format == "JPEG" and image.width == 200 and image.height > 250  # an A4 page
        assert sum(1 for n in image.convert("L").histogram() if n) > 10  # a page with print on it, not a blank
    assert "Data quality" not in html  # none given: no section


def test_report_combines_evaluations_and_names_bad_inputs(beir_eval, store_eval, tmp_path):
    out = tmp_path / "combined.html"
    result = run_cli("report", beir_eval, store_eval, "--out", out, "--verifier", QUALITY / "verifier" / "report.json")
    assert result.exit_code == 0, result.stderr[-2000:]
    html = out.read_text()
    _check_sections(html, [beir_eval, store_eval])
    assert "78.9%" in html and "Generation run" not in html
    assert (tmp_path / "combined.md").read_text().count("## ") == 3  # two benchmarks, data quality

    missing = run_cli("report", tmp_path / "nothing", "--out", out)
    assert missing.exit_code == 2 and "no summary.json (not an evaluation folder)" in missing.stderr
    wrong = run_cli("report", beir_eval, "--out", out, "--verifier", QUALITY / "run")
    assert wrong.exit_code == 2 and "no report.json (not an evaluate-verifier folder)" in wrong.stderr

    moved = tmp_path / "moved"  # a benchmark that is gone: the tables and charts stay, the pages are left out
    shutil.copytree(beir_eval, moved)
    summary = json.loads((moved / "summary.json").read_text())
    summary["source"]["path"] = str(tmp_path / "gone")
    (moved / "summary.json").write_text(json.dumps(summary))
    html_path, _ = write_report([moved], tmp_path / "moved.html")
    html = html_path.read_text()
    assert "queries and pages not shown: the benchmark could not be reopened" in html
    _check_sections(html, [moved])
    with pytest.raises(DocrerankError, match="no evaluation folder given"):
        write_report([], tmp_path / "none.html")


def _headless(binary: str, profile: Path, *args) -> str:
    command = [binary, "--headless", "--disable-gpu", "--no-sandbox", f"--user-data-dir={profile}", *map(str, args)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_the_report_renders_in_headless_chromium(chromium, beir_eval, store_eval, tmp_path):
    out = tmp_path / "report.html"
    write_report(
        [beir_eval, store_eval], out, run=QUALITY / "run", verifier=QUALITY / "verifier", mined=QUALITY / "mined"
    )
    dom = _headless(chromium, tmp_path / "profile", "--dump-dom", out.as_uri())
    _check_sections(dom, [beir_eval, store_eval])  # what the browser built: table rows, SVG charts, their bars
    page = _Page(dom)
    assert any(cells[:2] == ["positives_verified", "7"] for _, cells in page.rows)
    assert len(page.having("img", "thumbnail")) >= 1

    screenshot = tmp_path / "report.png"
    _headless(chromium, tmp_path / "profile", f"--screenshot={screenshot}", "--window-size=1200,2000",
              "--hide-scrollbars", out.as_uri())  # fmt: skip
    image = Image.open(screenshot).convert("RGB")
    assert image.size == (1200, 2000)
    colours = image.getcolors(maxcolors=1 << 20)
    assert len(colours) > 50  # text, tables, charts: not a blank page
    counts = {rgb: n for n, rgb in colours}
    assert counts.get(BAR_RGB, 0) > 2000  # the NDCG@5 bars are drawn
    assert counts.get(WORSE_RGB, 0) > 200  # the histogram's bins of queries the reranker made worse


def test_the_report_shows_the_training_sets_checks_from_inspect(beir_eval, tmp_path):
    rows = [
        {"page_id": "p1", "doc_id": "d1", "query": "Which year did the survey start?", "negatives": []},
        {"page_id": "p2", "doc_id": "d1", "query": "Which year did the survey start?", "negatives": []},
    ]  # asked twice, and no negative: two checks over their limits
    (tmp_path / "queries.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    assert invoke_cli("inspect", tmp_path / "queries.jsonl", "--out", tmp_path / "checks.json").exit_code == 0
    result = invoke_cli("report", beir_eval, "--out", tmp_path / "r.html", "--inspect", tmp_path / "checks.json")
    assert result.exit_code == 0, result.stdout
    html = (tmp_path / "r.html").read_text()
    assert "Training set checks" in html and "over their limits: <b>duplicate_queries, no_negative</b>" in html
    wrong = invoke_cli("report", beir_eval, "--out", tmp_path / "r2.html", "--inspect", tmp_path / "queries.jsonl")
    assert "not a report of `docrerank inspect`" in str(wrong.exception) or wrong.exit_code != 0
