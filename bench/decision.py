"""The table that decides the defaults: every first stage alone, then every reranker on the same candidates.

Part of the quality benchmark (bench/quality.py): the same test documents, hand-written questions and their
rephrased twins, the same seeded sample of questions, and the students that ``bench/quality.py`` trained
(each ``ce-*`` folder of ``--students``: hard labels, the 1.5B teacher's scores, or both).

1. First stages alone: BM25, dense retrieval with MiniLM, mpnet and EmbeddingGemma, and RRF of BM25 with
   EmbeddingGemma: NDCG@5 and Recall@10 (how often the answer is among the candidates a reranker gets).
2. Rerankers on fixed candidates, the ``--candidates`` first stage's top ``--k``: the zero-shot 0.5B and 1.5B
   (the teacher), the untrained cross-encoder, each student, and the cascade (the best student over all
   candidates, the teacher over its top ``--cascade-top``; ``--cascade-students all``: a cascade under every
   student and untrained start, so the best one's lead is not a choice made on the test; or the systems named,
   separated by ';', e.g. a declared test's chain alone). NDCG@5, its
   difference from the first stage and from the teacher with paired-randomization significance, and pairs a
   second. ``--teacher-scores cascade``: the teacher scores only the pairs the cascades give it (a student's
   top ``--cascade-top``), not every candidate, and has no row of its own.

Pairs a second are measured on this machine while a reranker scores pairs it has not cached (a rerun keeps
the figure of the run that scored them, in OUT/throughput.json); the cascade's come from its parts' measured
rates (``k`` student pairs and ``top`` teacher pairs a query). Scores are cached in OUT/scores.sqlite; the
cascade's teacher reuses the teacher row's scores. The corpus is the test documents' pages (``--corpus
test``, 323 pages: their EmbeddingGemma index takes ~30 min on 2 cores, the 839-page store's ~80 min).

    python bench/quality.py --quick --teacher full --out runs/quality-quick   # the students
    python bench/decision.py --students runs/quality-quick                     # ~1.5 h on 2 cores (the 1.5B ~52 min)
    python bench/decision.py --queries 0 --llms 1.5B --page-view focused     # the teacher as `label` reads pages

The four goals of the teacher-and-student issue are checked at the end against the measured figures.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from common import sample_store
from docrerank.cli.progress import progress_bar
from docrerank.evaluation import (
    PRIMARY,
    CachedReranker,
    ScoreCache,
    candidate_pairs,
    evaluate,
    mean,
    paired_p_value,
    per_query,
    reranker_identity,
    score_pairs,
)
from docrerank.evaluation.results import mark
from docrerank.pages import IngestSettings, PageStore, ingest
from docrerank.prompts.focus import PAGE_VIEWS
from docrerank.rerankers import CascadeReranker, CrossEncoderReranker, FusionReranker, LLMReranker, Reranker
from docrerank.retrieval import FIRST_STAGE, make_retriever
from quality import DATA, QUICK_QUERIES, ROOT, sample_queries, test_sets, train_student

console = Console(width=150)
FIRST_STAGES = {
    "bm25": "BM25",
    "dense": "dense MiniLM",
    "dense:mpnet": "dense mpnet",
    "dense:embeddinggemma": "dense EmbeddingGemma",
    "bm25+dense:embeddinggemma": "RRF BM25 + EmbeddingGemma",
}
LLMS = {"1.5B": "qwen2.5-coder-1.5b-instruct", "0.5B": "qwen2.5-coder-0.5b-instruct"}
TEACHER = "zero-shot 1.5B"


def zero_shot(model: str, page_view: str = "whole") -> LLMReranker:
    """The embedded LLM ``model`` asked True/False over the page text (``page_view``: the page's head or the
    passages nearest the question), as `--reranker llm [--page-view]` does."""
    from docrerank.backends import load_backend
    from docrerank.pipeline.config import PipelineConfig

    backend = load_backend(PipelineConfig().backends["verifier"].model_copy(update={"model": model}))
    return LLMReranker(backend, page_view=page_view)


def students(folder: Path) -> dict[str, tuple[Reranker, str]]:
    """Each ``ce-[mpnet-]RECIPE[-TARGETS]`` reranker the quality benchmark trained, named by base, recipe and
    targets (hard labels unless the folder says ``teacher`` or ``both``), and each
    ``fusion-[BASE-]RECIPE[-pullR][-TARGETS]`` (``--students fusion``, bench/reworded.py), with its untrained
    start (its bi-encoder alone)."""
    found = {}
    for path in sorted(folder.glob("ce-*")):
        if (path / "reranker.json").exists():
            name = path.name.removeprefix("ce-")
            base = "mpnet" if name.startswith("mpnet-") else "MiniLM"
            recipe, _, targets = name.removeprefix("mpnet-").rpartition("-")
            if targets not in ("teacher", "both"):
                recipe, targets = name.removeprefix("mpnet-"), "hard"
            reranker = Reranker.load(path)
            found[f"{base} {recipe} ({targets})"] = (reranker, reranker_identity(reranker, str(path)))
    for path in sorted(folder.glob("fusion-*")):
        if (path / "reranker.json").exists():
            reranker = Reranker.load(path)
            base = reranker.base or "MiniLM"
            settings = json.loads((path / "training.json").read_text())["settings"]
            targets = settings.get("targets", "hard")
            name = path.name.removeprefix("fusion-").removeprefix(f"{reranker.base}-").removesuffix(f"-{targets}")
            recipe = name.partition("-pull")[0]
            pull = f", pull {settings['regularization']:g}" if settings.get("regularization") else ""
            start = f"fusion {base} untrained"
            if start not in found:
                untrained = FusionReranker(reranker.base)
                found[start] = (untrained, reranker_identity(untrained, f"fusion:{reranker.base}"))
            found[f"fusion {base} {recipe} ({targets}{pull})"] = (reranker, reranker_identity(reranker, str(path)))
    return found


def test_documents_store(store: PageStore, out: Path) -> PageStore:
    """A page store of the test documents alone (their PDFs ingested again: page ids are content hashes, so
    the qrels hold): the corpus every first stage searches here, small enough to embed with EmbeddingGemma
    on 2 cores (the 839-page store's index takes over an hour)."""
    split = json.loads((DATA / "quality-split.json").read_text())["documents"]
    if not (out / "pages.parquet").exists():
        pdfs = sorted({page.source_path for page in store if split[page.doc_id]["split"] == "test"})
        ingest(pdfs, out, IngestSettings())
    return PageStore.open(out)


def train_students(base: str, quality: Path, out: Path, targets: list[str]) -> None:
    """``base`` students of the quality run's data, trained as it trains MiniLM's (3 epochs, batch 4, lr 2e-4):
    the full mixture's hard labels and, where ``--teacher full`` labeled it, the teacher's scores and both
    (``targets``: which of hard, teacher, both)."""
    jobs = [("full", quality / "mix-full", [])] if "hard" in targets else []
    if (quality / "teacher-full" / "examples.jsonl").exists():
        labeled = quality / "teacher-full"
        jobs += [(f"full-{t}", labeled, ["--targets", t]) for t in ("teacher", "both") if t in targets]
    for name, data, options in jobs:
        if data.exists():
            train_student(data, out / f"ce-{base}-{name}", "--model", base, "--lr", "2e-4", *options)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "decision")
    parser.add_argument("--store", type=Path, default=ROOT / "runs" / "demo" / "pages")
    parser.add_argument("--students", type=Path, default=ROOT / "runs" / "quality-quick")
    parser.add_argument("--queries", type=int, default=QUICK_QUERIES, help="seeded sample of test questions (0: all)")
    parser.add_argument("--sets", default="rephrased", help="query sets: rephrased, original or both")
    parser.add_argument("--candidates", default=FIRST_STAGE, help="the first stage rerankers re-score")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--corpus", choices=("test", "all"), default="test", help="the test documents' pages or all")
    parser.add_argument("--first-stages", default=",".join(FIRST_STAGES))
    parser.add_argument("--llms", default="1.5B,0.5B", help="zero-shot LLM rows (the 1.5B is the teacher)")
    parser.add_argument(
        "--page-view", choices=PAGE_VIEWS, default="whole", help="what the LLM rows read of a page (focused: faster)"
    )
    parser.add_argument(
        "--teacher-scores",
        choices=("all", "cascade"),
        default="all",
        help="the teacher scores every candidate (its own row), or only the pairs the cascades give it (no row)",
    )
    parser.add_argument("--cascade-top", type=int, default=3)
    parser.add_argument(
        "--cascade-students",
        default="best",
        help="the cascade's student: the best on the deciding set, each student and untrained start in turn (all), "
        "or the systems named, separated by ';' (a declared test's chain alone)",
    )
    parser.add_argument("--bases", default="", help="more student bases to train on the quality run's data (mpnet)")
    parser.add_argument("--base-targets", default="hard,teacher,both", help="which students of those bases")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    store = sample_store(args.store)
    if args.corpus == "test":
        store = test_documents_store(store, args.out / "pages")
    sets = sample_queries(test_sets(store, args.out), args.queries or None)
    sets = {name: sets[name] for name in args.sets.replace("both", "original,rephrased").split(",")}
    throughput_file = args.out / "throughput.json"
    throughput = json.loads(throughput_file.read_text()) if throughput_file.exists() else {}
    results: dict[str, dict] = {}

    # 1. first stages alone
    runs = {}
    first = Table(title="First stages alone (NDCG@5; Recall@10: the answer among a reranker's candidates)")
    for column in ("queries", "first stage", "NDCG@5", "Recall@10", "queries/s"):
        first.add_column(column)
    for spec in args.first_stages.split(","):
        retriever = make_retriever(spec, store)
        for name, benchmark in sets.items():
            queries = benchmark.judged_queries
            retriever.search([benchmark.queries[queries[0]]], args.k)  # index loaded, model warm
            start = time.perf_counter()
            rankings = retriever.search([benchmark.queries[q] for q in queries], max(args.k, 10))
            rate = len(queries) / (time.perf_counter() - start)
            runs[spec, name] = dict(zip(queries, rankings, strict=True))
            values = per_query(runs[spec, name], benchmark.qrels, queries, (PRIMARY, "R@10"))
            row = {"NDCG@5": mean(values[PRIMARY]), "Recall@10": mean(values["R@10"]), "queries/s": rate}
            label = FIRST_STAGES.get(spec, spec)
            results.setdefault(name, {"first stages": {}, "rerankers": {}})["first stages"][label] = row
            first.add_row(name, label, f"{row['NDCG@5']:.3f}", f"{row['Recall@10']:.3f}", f"{rate:.1f}")
    console.print(first)

    # 2. rerankers on the same candidates
    rerankers: dict[str, tuple[Reranker, str]] = {}
    for size in filter(None, args.llms.split(",")):
        reranker = zero_shot(LLMS[size], args.page_view)
        rerankers[f"zero-shot {size}"] = (reranker, json.dumps(reranker.settings(), sort_keys=True))
    rerankers["MiniLM untrained"] = (CrossEncoderReranker(), "untrained")
    for base in filter(None, args.bases.split(",")):
        train_students(base, args.students, args.out, args.base_targets.split(","))
    for folder in (args.students, args.out):
        rerankers |= students(folder)
    named = [s for s in args.cascade_students.split(";") if s not in ("best", "all")]
    if unknown := [s for s in named if s not in rerankers]:  # before hours of scoring, not after
        parser.error(f"no system {', '.join(map(repr, unknown))} for --cascade-students: {', '.join(rerankers)}")
    cache = ScoreCache(args.out / "scores.sqlite")
    candidates = {name: runs[args.candidates, name] for name in sets}
    pairs = [pair for name, run in candidates.items() for pair in candidate_pairs(sets[name], run)]
    page = next(iter(sets.values())).page
    rows = {s: r for s, r in rerankers.items() if s != TEACHER or args.teacher_scores == "all"}
    with progress_bar() as bar:
        for system, (reranker, identity) in rows.items():
            key = f"{system}:{identity}"
            fresh = len(set(pairs) - set(cache.scores(key)))
            task = bar.add_task(system, total=len(set(pairs)))
            start = time.perf_counter()
            score_pairs(reranker, key, pairs, page, cache, lambda n, t=task: bar.advance(t, n))
            if fresh >= 10:  # a rate worth recording (model loading included: it is part of the cost)
                throughput[system] = {"pairs": fresh, "seconds": time.perf_counter() - start}
                throughput_file.write_text(json.dumps(throughput, indent=2) + "\n")
    rate = {system: t["pairs"] / t["seconds"] for system, t in throughput.items()}
    for system in rate:  # a fusion's students read their start's vectors from its memo: the start's rate is theirs
        start = " ".join(system.split()[:2]) + " untrained"
        if system.startswith("fusion ") and start in rate:
            rate[system] = rate[start]

    by_set = {}
    for name, run in candidates.items():
        result = evaluate(sets[name], run, rows, args.k, "first stage", cache)
        by_set[name] = {s.name: s.values[PRIMARY] for s in result.systems}
    deciding = "rephrased" if "rephrased" in by_set else next(iter(by_set))
    trained = [s for s in rerankers if "untrained" not in s and not s.startswith("zero-shot")]
    if args.cascade_students == "all":  # every student and every untrained start (a fusion's: the first stage)
        under = [s for s in rerankers if not s.startswith("zero-shot")]
    elif args.cascade_students == "best":  # the best student on the deciding set
        under = [max(trained, key=lambda s: mean(by_set[deciding][s]))] if trained else []
    else:  # the students named (checked above)
        under = named
    teacher_key = f"{TEACHER}:{rerankers[TEACHER][1]}" if TEACHER in rerankers else ""
    scored, start = len(cache.scores(teacher_key)), time.perf_counter()
    for student in under if TEACHER in rerankers else []:  # the cascade: a student under the teacher
        cascade = CascadeReranker(
            CachedReranker(rerankers[student][0], f"{student}:{rerankers[student][1]}", cache),
            CachedReranker(rerankers[TEACHER][0], teacher_key, cache),
            args.cascade_top,
        )
        system = f"cascade: {student}, teacher top {args.cascade_top}"
        for name, run in candidates.items():
            result = evaluate(sets[name], run, {system: (cascade, "")}, args.k, "first stage", cache)
            by_set[name][system] = result.systems[1].values[PRIMARY]
    fresh = len(cache.scores(teacher_key)) - scored if teacher_key else 0
    if fresh >= 10:  # the teacher scored in the cascades alone (--teacher-scores cascade): its rate from them
        throughput[TEACHER] = {"pairs": fresh, "seconds": time.perf_counter() - start}
        throughput_file.write_text(json.dumps(throughput, indent=2) + "\n")
        rate[TEACHER] = fresh / throughput[TEACHER]["seconds"]
    for system in [s for s in by_set[deciding] if s.startswith("cascade: ")]:
        student = system.removeprefix("cascade: ").rpartition(", teacher top ")[0]
        if student in rate and TEACHER in rate:
            rate[system] = args.k / (args.k / rate[student] + args.cascade_top / rate[TEACHER])

    for name, values in by_set.items():
        table = Table(title=f"Rerankers on {FIRST_STAGES.get(args.candidates, args.candidates)}'s top {args.k}, "
                            f"{name} queries ({len(values['first stage'])})")  # fmt: skip
        for column in ("system", "NDCG@5", "Δ vs first stage", "Δ vs teacher", "pairs/s", "× teacher's speed"):
            table.add_column(column)
        teacher = values.get(TEACHER)
        for system, per in values.items():
            row = {"NDCG@5": mean(per)}
            cells = [f"{row['NDCG@5']:.3f}"]
            for key, baseline in (("vs first stage", values["first stage"]), ("vs teacher", teacher)):
                if baseline is None or baseline is per:
                    cells.append("")
                    continue
                row[key], row[f"p {key}"] = mean(per) - mean(baseline), paired_p_value(per, baseline)
                cells.append(f"{row[key]:+.3f}{mark(row[f'p {key}'])}")
            if system in rate:
                row["pairs/s"] = rate[system]
                if TEACHER in rate:
                    row["× teacher"] = rate[system] / rate[TEACHER]
            cells.append(f"{row['pairs/s']:.2f}" if "pairs/s" in row else "")
            cells.append(f"{row['× teacher']:.1f}×" if "× teacher" in row else "")
            table.add_row(system, *cells)
            if system != "first stage":
                results[name]["rerankers"][system] = row
        console.print(table)
        results[name]["candidates"] = FIRST_STAGES.get(args.candidates, args.candidates)
        results[name]["recipes"] = recipe_comparisons(values, name)
    (args.out / "decision.json").write_text(json.dumps(results, indent=2) + "\n")
    console.print("* p < 0.05, ** p < 0.01 (paired randomization test)")
    if TEACHER in results[deciding]["rerankers"]:
        goals(results[deciding], by_set[deciding], deciding)


RECIPE_PAIRS = (  # (recipe, baseline): mined-reworded is mined-only with reworded's positives (`mix --config`)
    ("base", "mined-only"),
    ("full", "mined-only"),
    ("reworded", "mined-only"),
    ("reworded", "full"),
    ("reworded", "mined-reworded"),
    ("mined-reworded", "mined-only"),
)


def untrained_start(system: str) -> str:
    """The untrained start of a student (``fusion BASE untrained``, ``MiniLM untrained``), or of a cascade's
    student (the cascade under that start)."""
    cascade = system.startswith("cascade: ")
    student, _, top = system.removeprefix("cascade: ").rpartition(", teacher top ") if cascade else (system, "", "")
    start = " ".join(student.split()[: 2 if student.startswith("fusion ") else 1]) + " untrained"
    return f"cascade: {start}, teacher top {top}" if cascade else start


def recipe_comparisons(values: dict[str, dict], name: str) -> list[dict]:
    """Each student on one recipe against the same student on another (what generated negatives add, and what
    reworded positives add to them), and each trained student or cascade against its untrained start, with p."""
    found = []
    for system, per in values.items():
        baselines = [
            system.replace(f" {recipe} ", f" {other} ") for recipe, other in RECIPE_PAIRS if f" {recipe} " in system
        ]
        if "untrained" not in system:  # a row with no untrained start (the teacher) finds none in values
            baselines.append(untrained_start(system))
        for baseline in baselines:
            if baseline in values and baseline != system:
                delta, p = mean(per) - mean(values[baseline]), paired_p_value(per, values[baseline])
                found.append({"system": system, "vs": baseline, "delta": delta, "p": p})
    if found:
        table = Table(title=f"Recipes against each other, {name} queries ({len(values['first stage'])})")
        for column in ("student", "NDCG@5", "against", "NDCG@5 ", "Δ", "p"):
            table.add_column(column)
        for row in found:
            scores = f"{mean(values[row['system']]):.3f}", row["vs"], f"{mean(values[row['vs']]):.3f}"
            table.add_row(row["system"], *scores, f"{row['delta']:+.3f}{mark(row['p'])}", f"{row['p']:.3f}")
        console.print(table)
    return found


def goals(result: dict, values: dict[str, dict], name: str) -> None:
    """The issue's four goals, from the measured rows of one query set."""
    stages, rows = result["first stages"], result["rerankers"]
    teacher = rows[TEACHER]
    students = {
        s: r for s, r in rows.items() if s.startswith(("MiniLM ", "mpnet ", "fusion ")) and "untrained" not in s
    }
    best_stage = max(stages, key=lambda s: stages[s]["NDCG@5"])
    chain = max(rows, key=lambda s: rows[s]["NDCG@5"])
    lines = []
    if students:
        best = max(students, key=lambda s: students[s]["NDCG@5"])
        r = students[best]
        lines.append(f"best student ({best}) {r['NDCG@5']:.3f} vs teacher {teacher['NDCG@5']:.3f} at "
                     f"{r['× teacher']:.0f}× its pairs/s (goal: ≥ teacher at ≥ 50×)")  # fmt: skip
    cascades = [s for s in rows if s.startswith("cascade") and "× teacher" in rows[s]]
    if cascades:
        r = rows[max(cascades, key=lambda s: rows[s]["NDCG@5"])]
        lines.append(f"cascade {r['NDCG@5']:.3f}, {r['vs teacher']:+.3f} vs teacher at "
                     f"{r['× teacher']:.1f}× its pairs/s (goal: ≥ +0.03 at ≥ 5×)")  # fmt: skip
    gain = rows[chain]["NDCG@5"] - stages[best_stage]["NDCG@5"]
    lines.append(f"best chain ({result['candidates']} + {chain}) {rows[chain]['NDCG@5']:.3f} vs best first stage "
                 f"({best_stage}) {stages[best_stage]['NDCG@5']:.3f}: {gain:+.3f} (goal: ≥ +0.05)")  # fmt: skip
    hard = {s: r["NDCG@5"] for s, r in students.items() if s.endswith("(hard)")}
    mined = next((s for s in hard if " mined-only " in s), None)
    generated = max((s for s in hard if s != mined), key=hard.get, default=None)
    if mined and generated:
        p = paired_p_value(values[generated], values[mined])
        lines.append(f"{generated} {hard[generated]:.3f} vs {mined} {hard[mined]:.3f}: "
                     f"{hard[generated] - hard[mined]:+.3f}{mark(p)} (goal: generated negatives help)")  # fmt: skip
    console.print(f"[bold]Goals ({name} queries)[/bold]\n" + "\n".join(f"- {line}" for line in lines))


if __name__ == "__main__":
    main()
