"""The evaluation report: one self-contained HTML page (``report.html``) and a markdown summary (``report.md``).

Read from one or more evaluation folders (``docrerank evaluate --out``: ``summary.json``, ``per_query.jsonl``,
``runs/``), one section per benchmark:

- the paper-style table (``results.table_rows``) and a bar chart of each system's NDCG@5;
- per reranker, a histogram of its per-query NDCG@5 differences from the first stage (bins of 0.1; the
  middle bin, grey, holds the queries it left within 0.05 of the first stage);
- the best reranker's (highest NDCG@5) worst and best queries by that difference, each with its text, its
  relevant page and the reranker's top page: page images as ~200 px JPEG thumbnails when the benchmark is a
  page store, the first 300 characters of the page's text for a text benchmark (BEIR). The benchmark is
  reopened from ``summary.json``'s ``source``; where it cannot be, the section says why and shows ids only.

Given a generation run, an ``evaluate-verifier`` folder or a ``mine --verify`` folder, a data-quality section
follows: pass rates per stage, rejection reasons, verifier agreement, per-property yield, hardness and
diversity (``RUN/stats.json``), the verifier's measured precision (``report.json``) and the likely-false-
negative rate of the mined pages (``summary.json``). Whatever is not given is left out.

The page needs nothing outside itself: CSS is inline, charts are inline SVG drawn here (no script), images are
data URIs, so it opens offline and can be mailed as one file.
"""

from __future__ import annotations

import base64
import io
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2

from docrerank.errors import DocrerankError
from docrerank.evaluation.benchmark import Benchmark
from docrerank.evaluation.loaders import load_beir, load_realmm, load_store, load_vidore
from docrerank.evaluation.metrics import LABELS, MEASURES, PRIMARY
from docrerank.evaluation.results import mark, markdown, run_path, table_rows
from docrerank.evaluation.runner import Comparison, Evaluation, SystemResult
from docrerank.pages import PageStore
from docrerank.pages.store import atomic_write_bytes
from docrerank.retrieval.runs import read_trec

__all__ = [
    "quality_view",
    "read_evaluation",
    "read_quality",
    "reopen_benchmark",
    "template_environment",
    "write_report",
]

SHOWN = 5  # worst and best queries shown
THUMBNAIL_WIDTH = 200
TEXT_CHARS = 300
BAR, WORSE, BETTER, SAME = "#4c78a8", "#e45756", "#54a24b", "#9d9d9d"


def _read_json(path: Path, name: str, what: str, fix: str) -> dict[str, Any]:
    """``path`` itself, or ``path/name`` when ``path`` is a folder, as JSON; errors name the file and the fix."""
    file = path / name if path.is_dir() else path
    if not file.is_file():
        raise DocrerankError(f"{path}: no {name} ({what}): {fix}")
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DocrerankError(f"{file}:{exc.lineno}: not JSON ({exc.msg}): {fix}") from None
    if not isinstance(data, dict):
        raise DocrerankError(f"{file}: not a JSON object: {fix}")
    return data


def read_evaluation(folder: Path) -> Evaluation:
    """An evaluation folder back in memory: means and comparisons, per-query values, each system's run."""
    folder = Path(folder)
    fix = f"give a folder written by `docrerank evaluate ... --out {folder}`"
    summary = _read_json(folder, "summary.json", "not an evaluation folder", fix)
    if not isinstance(summary.get("systems"), dict) or not summary["systems"]:
        raise DocrerankError(f"{folder / 'summary.json'}: no systems: {fix}")
    values: dict[str, dict[str, dict[str, float]]] = {name: {m: {} for m in MEASURES} for name in summary["systems"]}
    per_query = folder / "per_query.jsonl"
    if not per_query.is_file():
        raise DocrerankError(f"{folder}: no per_query.jsonl: {fix}")
    for number, line in enumerate(per_query.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            for measure in MEASURES:
                values[row["system"]][measure][str(row["query_id"])] = float(row[measure])
        except (json.JSONDecodeError, KeyError, TypeError, ValueError):
            raise DocrerankError(f"{per_query}:{number}: not a per-query line of the summary's systems") from None
    systems = []
    for name in summary["systems"]:
        path = run_path(folder, name)
        run = read_trec(path)[0] if path.is_file() else {}
        systems.append(SystemResult(name, run, values[name]))
    comparisons = [Comparison(**c) for c in summary.get("comparisons", [])]
    return Evaluation(
        summary.get("benchmark", folder.name),
        summary.get("source", {}),
        int(summary.get("k", 0)),
        int(summary.get("queries", 0)),
        systems,
        comparisons,
    )


def reopen_benchmark(source: dict[str, str]) -> Benchmark:
    """The benchmark an evaluation ran on, loaded again from its recorded ``source``."""
    kind, path = source.get("format"), source.get("path")
    if not kind or not path:
        raise DocrerankError("the evaluation records no benchmark source (an older summary.json): rerun it")
    if kind == "beir":
        return load_beir(path, source.get("split", "test"))
    if kind == "store":
        return load_store(path, source["queries"], source["qrels"])
    if kind == "vidore":
        return load_vidore(path, source.get("split", "test"))
    if kind == "realmm":
        return load_realmm(path, int(source.get("level", 0)), source.get("split", "test"))
    raise DocrerankError(f"benchmark format {kind!r} is not one the report can reopen")


# -- charts: geometry computed here, drawn as SVG by the template ------------------------------------------------


def _bar_chart(items: list[tuple[str, float]], label: str, percent: bool = False) -> dict[str, Any]:
    """Horizontal bars, one per (name, value), values from 0 to max(1, largest value)."""
    left, width, row, top = 170, 420, 26, 8
    scale = max([1.0, *(v for _, v in items if not math.isnan(v))])
    bars = []
    for i, (name, value) in enumerate(items):
        shown = 0.0 if math.isnan(value) else value
        length = width * shown / scale
        text = "-" if math.isnan(value) else f"{value:.0%}" if percent else f"{value:.3f}"
        bars.append(
            {
                "name": name,
                "x": left,
                "y": top + i * row,
                "w": round(length, 1),
                "h": row - 8,
                "text": text,
                "text_x": round(left + length + 6, 1),
                "fill": BAR,
            }
        )
    height = top + len(items) * row + 24
    ticks = [
        {"x": round(left + width * t / 4, 1), "text": f"{scale * t / 4:.0%}" if percent else f"{scale * t / 4:.2f}"}
        for t in range(5)
    ]
    return {
        "kind": "bars",
        "label": label,
        "width": left + width + 70,
        "height": height,
        "bars": bars,
        "ticks": ticks,
        "axis_y": height - 18,
        "left": left,
        "right": left + width,
    }


def _histogram(deltas: list[float], label: str) -> dict[str, Any]:
    """Counts of per-query differences in 21 bins of 0.1 centred on -1.0 .. 1.0; the centre bin is grey."""
    counts = [0] * 21
    for delta in deltas:
        counts[min(20, max(0, round(delta * 10) + 10))] += 1
    left, top, plot_w, plot_h = 40, 10, 462, 150
    step = plot_w / 21
    peak = max(counts) or 1
    bars = []
    for i, count in enumerate(counts):
        h = plot_h * count / peak
        fill = SAME if i == 10 else WORSE if i < 10 else BETTER
        bars.append(
            {
                "x": round(left + i * step + 1, 1),
                "y": round(top + plot_h - h, 1),
                "w": round(step - 2, 1),
                "h": round(h, 1),
                "fill": fill,
                "count": count,
                "centre": (i - 10) / 10,
            }
        )
    ticks = [
        {"x": round(left + (i + 0.5) * step, 1), "text": f"{(i - 10) / 10:+.1f}".replace("+0.0", "0")}
        for i in range(0, 21, 5)
    ]
    return {
        "kind": "histogram",
        "label": label,
        "width": left + plot_w + 10,
        "height": top + plot_h + 40,
        "bars": bars,
        "ticks": ticks,
        "axis_y": top + plot_h,
        "left": left,
        "right": left + plot_w,
        "top": top,
        "peak": peak,
    }


# -- pages ----------------------------------------------------------------------------------------------------


def _thumbnail(benchmark: Benchmark, page_id: str, cache: dict[str, dict]) -> dict[str, str]:
    """A page as the report shows it: a JPEG data URI of its image (a page store), else its first characters."""
    if page_id in cache:
        return cache[page_id]
    if page_id not in benchmark.corpus:
        shown = {"kind": "missing", "text": "not in the benchmark's corpus"}
    elif isinstance(benchmark.corpus, PageStore):
        image = benchmark.corpus.image(page_id)
        height = max(1, round(image.height * THUMBNAIL_WIDTH / image.width))
        image = image.resize((THUMBNAIL_WIDTH, height))
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=80)
        shown = {"kind": "image", "src": "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode()}
    else:
        text = " ".join(benchmark.page(page_id).text.split())
        shown = {"kind": "text", "text": text[:TEXT_CHARS] + ("…" if len(text) > TEXT_CHARS else "")}
    cache[page_id] = shown
    return shown


def _rank(ranking: list[tuple[str, float]], page_id: str) -> int | None:
    return next((i for i, (p, _) in enumerate(ranking, 1) if p == page_id), None)


@dataclass
class _Section:
    """One benchmark's part of the report."""

    folder: Path
    evaluation: Evaluation
    benchmark: Benchmark | None = None
    notes: list[str] = field(default_factory=list)


def _query_rows(section: _Section, reranker: SystemResult, query_ids: list[str], deltas: dict[str, float]):
    evaluation, benchmark = section.evaluation, section.benchmark
    first = evaluation.systems[0]
    thumbs: dict[str, dict] = {}
    rows = []
    for query_id in query_ids:
        row: dict[str, Any] = {
            "query_id": query_id,
            "delta": deltas[query_id],
            "first": first.values[PRIMARY][query_id],
            "reranked": reranker.values[PRIMARY][query_id],
            "text": benchmark.queries.get(query_id, "") if benchmark else "",
            "pages": [],
        }
        judged = benchmark.qrels.get(query_id, {}) if benchmark else {}
        ranking, first_ranking = reranker.run.get(query_id, []), first.run.get(query_id, [])
        relevant = sorted(
            (p for p, g in judged.items() if g > 0),
            key=lambda p: (-judged[p], _rank(first_ranking, p) or math.inf),
        )
        if relevant:
            page = relevant[0]
            where = [
                f"rank {rank} in {name}" if (rank := _rank(r, page)) else f"not in {name}'s top {evaluation.k}"
                for name, r in ((first.name, first_ranking), (reranker.name, ranking))
            ]
            row["pages"].append(
                {
                    "role": "relevant page",
                    "page_id": page,
                    "note": f"grade {judged[page]}; " + ", ".join(where),
                    "relevant": True,
                    "shown": _thumbnail(benchmark, page, thumbs),
                }
            )
        if ranking:
            page = ranking[0][0]
            grade = judged.get(page, 0)
            row["pages"].append(
                {
                    "role": f"{reranker.name}'s top page",
                    "page_id": page,
                    "note": f"relevant (grade {grade})" if grade > 0 else "not relevant",
                    "relevant": grade > 0,
                    "shown": _thumbnail(benchmark, page, thumbs) if benchmark else None,
                }
            )
        rows.append(row)
    return rows


def _section_view(section: _Section, index: int) -> dict[str, Any]:
    evaluation = section.evaluation
    header, rows = table_rows(evaluation)
    first, rerankers = evaluation.systems[0], evaluation.systems[1:]
    view: dict[str, Any] = {
        "id": f"b{index}-" + re.sub(r"[^A-Za-z0-9_-]+", "-", evaluation.benchmark).strip("-"),
        "name": evaluation.benchmark,
        "folder": str(section.folder),
        "source": evaluation.source,
        "k": evaluation.k,
        "queries": evaluation.queries,
        "first": first.name,
        "header": header,
        "rows": rows,
        "notes": section.notes,
        "chart": _bar_chart([(s.name, s.means[PRIMARY]) for s in evaluation.systems], f"{LABELS[PRIMARY]} per system"),
        "deltas": [],
        "queries_of": None,
    }
    for reranker in rerankers:
        deltas = {q: v - first.values[PRIMARY].get(q, 0.0) for q, v in reranker.values[PRIMARY].items()}
        comparison = next(
            (c for c in evaluation.comparisons if c.system == reranker.name and c.baseline == first.name), None
        )
        view["deltas"].append(
            {
                "system": reranker.name,
                "counts": _counts(deltas.values()),
                "comparison": comparison,
                "mark": mark(comparison.p_value) if comparison else "",
                "chart": _histogram(
                    list(deltas.values()), f"per-query {LABELS[PRIMARY]} of {reranker.name} minus {first.name}"
                ),
            }
        )
    if rerankers:
        best = max(rerankers, key=lambda s: s.means[PRIMARY])
        deltas = {q: v - first.values[PRIMARY].get(q, 0.0) for q, v in best.values[PRIMARY].items()}
        order = sorted(deltas, key=lambda q: (deltas[q], q))
        worst = [q for q in order if deltas[q] < 0][:SHOWN]
        top = [q for q in reversed(order) if deltas[q] > 0][:SHOWN]
        view["queries_of"] = {
            "system": best.name,
            "worst": _query_rows(section, best, worst, deltas),
            "best": _query_rows(section, best, top, deltas),
            "unchanged": sum(1 for d in deltas.values() if d == 0),
        }
    return view


def _counts(deltas) -> dict[str, int]:
    deltas = list(deltas)
    return {
        "better": sum(d > 0 for d in deltas),
        "worse": sum(d < 0 for d in deltas),
        "unchanged": sum(d == 0 for d in deltas),
    }


# -- data quality ---------------------------------------------------------------------------------------------


def read_quality(
    run: Path | None = None, verifier: Path | None = None, mined: Path | None = None, inspect: Path | None = None
) -> dict[str, Any]:
    """The data-quality inputs that are given, read and checked: ``{"run": stats, "verifier": report,
    "mined": summary, "inspect": checks}`` (keys of the ones given). A given path that holds no such file is an
    error."""
    quality: dict[str, Any] = {}
    if inspect is not None:
        checks = _read_json(Path(inspect).parent, Path(inspect).name, "not an inspect report",
                            "give the --out file of `docrerank inspect`")  # fmt: skip
        if "checks" not in checks:
            raise DocrerankError(f"{inspect}: not a report of `docrerank inspect` (no checks)")
        quality["inspect"] = {"path": str(inspect), **checks}
    if run is not None:
        stats = _read_json(
            Path(run),
            "stats.json",
            "not a generation run",
            "give a run directory of `docrerank generate`; `docrerank stats RUN` writes its stats.json",
        )
        if "stages" not in stats:
            raise DocrerankError(f"{run}: its stats.json has no stages: run `docrerank stats {run}`")
        quality["run"] = {"path": str(run), **stats}
    if verifier is not None:
        report = _read_json(
            Path(verifier),
            "report.json",
            "not an evaluate-verifier folder",
            "give the --out folder of `docrerank evaluate-verifier` (or its report.json)",
        )
        if "accepted_negatives" not in report:
            raise DocrerankError(f"{verifier}: not a report of `docrerank evaluate-verifier` (no accepted_negatives)")
        quality["verifier"] = {"path": str(verifier), **report}
    if mined is not None:
        summary = _read_json(
            Path(mined),
            "summary.json",
            "not a mining folder",
            "give the --out folder of `docrerank mine` (or its summary.json)",
        )
        if "counts" not in summary:
            raise DocrerankError(f"{mined}: not a summary of `docrerank mine` (no counts)")
        quality["mined"] = {"path": str(mined), **summary}
    return quality


def quality_view(quality: dict[str, Any]) -> dict[str, Any] | None:
    if not quality:
        return None
    view: dict[str, Any] = {}
    stats = quality.get("run")
    if stats:
        stages = [
            {
                "stage": name,
                "kept": row.get("kept", 0),
                "rejected": row.get("rejected", 0),
                "pass_rate": row.get("pass_rate"),
                "reasons": list(row.get("rejection_reasons", {}).items())[:5],
                "more_reasons": max(0, len(row.get("rejection_reasons", {})) - 5),
            }
            for name, row in stats["stages"].items()
        ]
        rated = [(s["stage"], s["pass_rate"]) for s in stages if s["pass_rate"] is not None]
        run_view: dict[str, Any] = {
            "path": stats["path"],
            "stages": stages,
            "chart": _bar_chart(rated, "pass rate per stage", percent=True) if rated else None,
            "agreement": [(k, v) for k, v in stats.get("verifier_agreement", {}).items() if v.get("pairs")],
            "by_property": list(stats.get("negatives_by_property", {}).items()),
            "quality": stats.get("quality"),
            "hardness_chart": _hardness_chart(stats.get("quality")),
            "cost": stats.get("cost") if (stats.get("cost") or {}).get("stages") else None,
        }
        view["run"] = run_view
    if "verifier" in quality:
        view["verifier"] = quality["verifier"]
    if "mined" in quality:
        view["mined"] = quality["mined"]
    if "inspect" in quality:
        view["inspect"] = quality["inspect"]
    return view


def _hardness_chart(measured: dict[str, Any] | None) -> dict[str, Any] | None:
    """Mean similarity of each generator's negatives to their positive (embedding, else lexical): how hard."""
    if not measured or not measured.get("hardness"):
        return None
    name = "embedding" if any(s.get("embedding") for s in measured["hardness"].values()) else "lexical"
    bars = [(group, scores[name]["mean"]) for group, scores in measured["hardness"].items() if scores.get(name)]
    return _bar_chart(bars, f"hardness: mean {name} similarity to the positive") if bars else None


# -- output ---------------------------------------------------------------------------------------------------


def _pct(value: Any, digits: int = 0) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}%}"


def _num(value: Any, digits: int = 3) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def template_environment(*packages: str) -> jinja2.Environment:
    """The report's Jinja2 environment (autoescaped, strict, its filters), reading templates from ``packages``
    first, then the report's own (``docrerank view`` draws its stats page with the report's macros)."""
    loaders = [jinja2.PackageLoader(package, "templates") for package in (*packages, "docrerank.evaluation")]
    env = jinja2.Environment(
        loader=jinja2.ChoiceLoader(loaders),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["pct"] = _pct
    env.filters["num"] = _num
    return env


def _quality_markdown(quality: dict[str, Any]) -> list[str]:
    lines = ["## Data quality", ""]
    run = quality.get("run")
    if run:
        lines += [
            f"Generation run `{run['path']}`:",
            "",
            "| stage | kept | rejected | pass rate |",
            "|---|---|---|---|",
        ]
        for stage in run["stages"]:
            lines.append(f"| {stage['stage']} | {stage['kept']} | {stage['rejected']} | {_pct(stage['pass_rate'])} |")
        measured = run["quality"]
        if measured:
            hardness = measured["hardness"].get("all", {})
            names = [name for name in ("lexical", "char", "embedding") if hardness.get(name)]
            parts = ", ".join(f"{name} {hardness[name]['mean']:.2f}" for name in names) or "-"
            distinct = _num(measured["diversity"].get("corpus_distinct_2"), 2)
            lines += [
                "",
                f"Hardness of {measured['negatives']} negatives (mean similarity to their positive): {parts}; "
                f"distinct-2 over the negatives {distinct}",
            ]
        lines.append("")
    verifier = quality.get("verifier")
    if verifier:
        accepted = verifier["accepted_negatives"]
        lines += [
            f"Verifier (`{verifier['path']}`, {verifier.get('evaluated', '?')} labeled pairs): accepted negatives "
            f"precision {_pct(accepted.get('precision'), 1)}, recall {_pct(accepted.get('recall'), 1)}",
            "",
        ]
    mined = quality.get("mined")
    if mined:
        rates = mined.get("false_negatives")
        measured = (
            f"{_pct(rates.get('rate'), 1)} of {rates.get('judged', 0)} judged "
            f"({_pct(rates.get('rate_with_undecided'), 1)} counting undecided)"
            if rates
            else "not measured (mined without --verify)"
        )
        pages = mined["counts"].get("negatives", 0)
        lines += [f"Mined negatives (`{mined['path']}`, {pages} pages): likely false negatives {measured}", ""]
    return lines


def _markdown(sections: list[dict[str, Any]], evaluations: list[Evaluation], quality: dict[str, Any] | None) -> str:
    """report.md: each benchmark's table (``results.markdown``), the top-line deltas, the data quality."""
    lines = ["# Evaluation report", ""]
    for view, evaluation in zip(sections, evaluations, strict=True):
        lines += [f"## {view['name']}", "", markdown(evaluation).rstrip(), ""]
        for delta in view["deltas"]:
            comparison, counts = delta["comparison"], delta["counts"]
            change = f"{comparison.delta:+.3f}{delta['mark']} (p {comparison.p_value:.3f})" if comparison else "-"
            lines.append(
                f"- **{delta['system']}** vs {view['first']}: {LABELS[PRIMARY]} {change}; per query "
                f"{counts['better']} better, {counts['worse']} worse, {counts['unchanged']} unchanged"
            )
        shown = view["queries_of"]
        if shown:
            for which in ("worst", "best"):
                listed = ", ".join(f"{r['query_id']} ({r['delta']:+.3f})" for r in shown[which]) or "none"
                lines.append(f"- {which} queries of {shown['system']}: {listed}")
        lines.append("")
    if quality:
        lines += _quality_markdown(quality)
    return "\n".join(lines).rstrip() + "\n"


def write_report(
    evaluations: list[Path],
    out: Path,
    run: Path | None = None,
    verifier: Path | None = None,
    mined: Path | None = None,
    inspect: Path | None = None,
) -> tuple[Path, Path]:
    """Write the HTML report to ``out`` and its markdown summary beside it (``out`` with ``.md``).

    ``evaluations``: evaluation folders (``docrerank evaluate --out``), one section each. ``run``,
    ``verifier``, ``mined``, ``inspect``: a generation run, an ``evaluate-verifier`` folder, a ``mine --verify``
    folder, a ``docrerank inspect --out`` JSON, for the data-quality section. Returns the two paths.
    """
    if not evaluations:
        raise DocrerankError("no evaluation folder given: give at least one `docrerank evaluate` --out folder")
    quality = read_quality(run, verifier, mined, inspect)
    sections = []
    for folder in evaluations:
        section = _Section(Path(folder), read_evaluation(Path(folder)))
        try:
            section.benchmark = reopen_benchmark(section.evaluation.source)
        except (DocrerankError, OSError) as exc:
            section.notes.append(f"queries and pages not shown: the benchmark could not be reopened ({exc})")
        sections.append(section)
    views = [_section_view(section, i) for i, section in enumerate(sections)]
    shown_quality = quality_view(quality)
    html = (
        template_environment()
        .get_template("report.html.j2")
        .render(
            sections=views,
            quality=shown_quality,
            labels=LABELS,
            primary=LABELS[PRIMARY],
            colors={"bar": BAR, "worse": WORSE, "better": BETTER, "same": SAME},
        )
    )
    out = Path(out)
    md_path = out.with_suffix(".md")
    atomic_write_bytes(out, html.encode())
    atomic_write_bytes(md_path, _markdown(views, [s.evaluation for s in sections], shown_quality).encode())
    return out, md_path
