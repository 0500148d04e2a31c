"""How much of a fusion's gain is its fit's luck: each recipe refitted at other seeds, all on the test's candidates.

    python bench/reworded.py --out runs/quality-reworded120 --bases embeddinggemma --pulls 1    # the seed-0 fits
    python bench/seeds.py --students runs/quality-reworded120 --seeds 0,1,2

A fusion's fit is seeded (the order of its batches); bench/reworded.py fits each recipe once, at seed 0, so the
difference between two recipes, or between two sizes of the set, holds the fits' own spread too. This fits
the EmbeddingGemma fusion (pull 1, as reworded.py) of each recipe's mixture at every seed (seed 0 is
reworded.py's folder, reused), in one process so that the training texts are encoded once, then ranks
EmbeddingGemma's committed top 10 (bench/data/declared-chain) for the quality benchmark's 94 rephrased
questions with every fit in one `docrerank evaluate`. It prints each fit's NDCG@5, each recipe's mean and
spread over the seeds, and the recipes' seed-averaged per-question NDCG@5 against EmbeddingGemma alone and
against `mined-only` (paired randomization test). Written to OUT/seeds.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from docrerank.cli.demo import rephrased_twins
from docrerank.evaluation.metrics import paired_p_value
from quality import docrerank  # bench/quality.py: scripts run as `python bench/NAME.py`
from reworded import fit, fusion_folder

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "bench" / "data"
CANDIDATES = DATA / "declared-chain" / "embeddinggemma-top10-rephrased.trec"
PRIMARY = "nDCG@5"


def fits(students: Path, out: Path, recipes: list[str], seeds: list[int]) -> dict[str, list[Path]]:
    """Each recipe's fusion at each seed: reworded.py's own folder at seed 0, the others fitted here."""
    made = {}
    for recipe in recipes:
        made[recipe] = []
        for seed in seeds:
            folder = students / fusion_folder("embeddinggemma", recipe, "1")
            if seed:
                folder = out / f"{folder.name}-seed{seed}"
                fit(students / f"mix-{recipe}", folder, "embeddinggemma", "1", "--held-out", "0", "--seed", seed)
                print("fitted", folder.name, flush=True)
            made[recipe].append(folder)
    return made


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--students", type=Path, default=ROOT / "runs" / "quality-reworded120")
    parser.add_argument("--pages", type=Path, default=ROOT / "runs" / "decision94" / "pages", help="the test pages")
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "seeds")
    parser.add_argument("--recipes", default="mined-only,full,reworded")
    parser.add_argument("--seeds", default="0,1,2")
    args = parser.parse_args()
    recipes, seeds = args.recipes.split(","), [int(s) for s in args.seeds.split(",")]
    made = fits(args.students, args.out, recipes, seeds)
    rows = [json.loads(line) for line in (DATA / "quality-queries.jsonl").read_text().splitlines() if line.strip()]
    judgments = (DATA / "quality-qrels.trec").read_text().splitlines(keepends=True)
    questions, qrels = rephrased_twins(args.out / "questions", rows, judgments)
    systems = [f"saved={folder}" for folders in made.values() for folder in folders]
    evaluation = args.out / "evaluation"
    docrerank("evaluate", "--benchmark", args.pages, "--queries", questions, "--qrels", qrels, "--first-stage",
              CANDIDATES, "--k", 10, "--rerankers", ",".join(systems), "--out", evaluation)  # fmt: skip
    per_query: dict[str, dict[str, float]] = {}
    for line in (evaluation / "per_query.jsonl").read_text().splitlines():
        row = json.loads(line)
        per_query.setdefault(row["system"], {})[row["query_id"]] = row[PRIMARY]
    first = next(name for name in per_query if not name.startswith("saved="))
    averaged, report = {}, {"first stage": statistics.mean(per_query[first].values()), "recipes": {}}
    for recipe, folders in made.items():
        runs = [per_query[f"saved={folder}"] for folder in folders]
        averaged[recipe] = {q: statistics.mean(run[q] for run in runs) for q in runs[0]}
        means = [statistics.mean(run.values()) for run in runs]
        report["recipes"][recipe] = {
            "seeds": dict(zip(map(str, seeds), means, strict=True)),
            "mean": statistics.mean(means),
            "spread": max(means) - min(means),
            "vs first stage": statistics.mean(averaged[recipe].values()) - report["first stage"],
            "p vs first stage": paired_p_value(averaged[recipe], per_query[first]),
        }
    for recipe in recipes:
        if recipe != "mined-only" and "mined-only" in averaged:
            delta = statistics.mean(averaged[recipe].values()) - statistics.mean(averaged["mined-only"].values())
            p_value = paired_p_value(averaged[recipe], averaged["mined-only"])
            report["recipes"][recipe] |= {"vs mined-only": delta, "p vs mined-only": p_value}
    (args.out / "seeds.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"EmbeddingGemma alone: {report['first stage']:.3f} NDCG@5 ({len(per_query[first])} rephrased questions)")
    for recipe, row in report["recipes"].items():
        each = " ".join(f"{value:.3f}" for value in row["seeds"].values())
        against = ""
        if "vs mined-only" in row:
            against = f", vs mined-only {row['vs mined-only']:+.3f} (p = {row['p vs mined-only']:.3f})"
        print(f"{recipe}: seeds {each}, mean {row['mean']:.3f} (spread {row['spread']:.3f}); seed-averaged vs "
              f"EmbeddingGemma {row['vs first stage']:+.3f} (p = {row['p vs first stage']:.3f}){against}")  # fmt: skip


if __name__ == "__main__":
    main()
