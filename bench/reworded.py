"""Reworded positives: does a student learn less of the page's words when its questions copy fewer of them?

    python bench/reworded.py            # the 1.5B's rephrasings (~25 min for 56 pages; committed), then training
    python bench/decision.py --students runs/quality-reworded --out runs/decision94 --queries 0 --sets both \
        --llms "" --first-stages dense:embeddinggemma    # every fusion on EmbeddingGemma's top 10, recipes compared

The committed training set (bench/data/trainset, its finished pages) is rephrased again with three sampled
wordings per positive, every positive (`rephrased: {candidates: 3, fraction: 1.0}`), the one that copies
least of its page verified; the negative stages are switched off in that run, so only the rephrasings are new
(its positives come from the set's shards). The rephrasings are committed beside the set
(bench/data/trainset/reworded; `--rephrasings-only` makes or extends them and stops), so a rerun asks the 1.5B
only for pages the set gained since. The experiment's run directory is that run with the set's
selected negatives added back: the same positives and negatives, other rephrasings. Then BM25 mines pages for
it, each recipe is mixed at mined-only's total (``mined-reworded``: mined-only with reworded's positives,
`mix --config`), and fusions of MiniLM and EmbeddingGemma are fitted on each, in one process so that a base's
vectors are encoded once. Written to runs/quality-reworded.

    python bench/reworded.py --pulls 0,0.01,0.1,1,3,10 --select 3    # each fusion at each pull toward its start

``--pulls`` fits every recipe's fusions at each `train --regularization` (folders ``...-pullR``, which
bench/decision.py names "(hard, pull R)" and compares recipe with recipe at equal pulls); ``--select N`` then
picks each base's pull on N held-out splits of the reworded mixture's documents (``chosen-pulls.json``).

    python bench/reworded.py --bases embeddinggemma --pulls 0,1 --teacher   # students of the teacher's scores

``--teacher`` labels the ``reworded`` and ``mined-reworded`` mixtures with the focused 1.5B (`docrerank label
--page-view focused`, ~35 min here) and trains MiniLM cross-encoders and the fusions on its scores (targets
``teacher`` and ``both``; folders ``ce-RECIPE-TARGETS``, ``fusion-[BASE-]RECIPE[-pullR]-TARGETS``).
"""

from __future__ import annotations

import argparse
import itertools
import json
import shutil
import subprocess
from pathlib import Path

import yaml
from typer.testing import CliRunner

from common import sample_store  # bench/common.py: scripts run as `python bench/NAME.py`
from docrerank.cli.app import app
from docrerank.cli.progress import StageBars
from docrerank.pipeline.config import PipelineConfig
from docrerank.pipeline.generate import run_pipeline
from docrerank.pipeline.rundir import RunDir
from quality import docrerank, mixtures, train_student

ROOT = Path(__file__).resolve().parent.parent
SET = ROOT / "bench" / "data" / "trainset"
REPHRASINGS = SET / "reworded"  # the rephrasings this script made, committed: a rerun reuses them
RECIPES = ("mined-only", "base", "full", "reworded", "mined-reworded")


def rephrased_again(store, work: Path) -> Path:
    """A run of the committed set's pages with only the rephrasings new (three candidates, every positive); a
    run made before keeps its pages (the set grows; the fits compared must share their data).

    The rephrasings made are committed beside the set (``bench/data/trainset/reworded``: the rephrased stage's
    finished shards and the run's fingerprints), so a later run asks the 1.5B only for pages not yet there."""
    run = work / "rephrasings"
    if made := RunDir(run).shards("rephrased"):
        planned = RunDir(run).shard_pages()
        ids = [page for shard in made for page in planned[shard]]
    else:
        ids = json.loads((SET / "manifest.json").read_text())["page_ids"]
    for part in ("shards", "stages/positives", "stages/positives_verified"):  # what the rephrasings build on
        shutil.copytree(SET / "run" / part, run / part, dirs_exist_ok=True)
    if (REPHRASINGS / "fingerprints.json").exists():
        shutil.copytree(REPHRASINGS, run, dirs_exist_ok=True)
    config = yaml.safe_load((SET / "config.yaml").read_text())
    config["rephrased"] |= {"fraction": 1.0, "candidates": 3}
    for generator in ("freeform", "controlled", "rulebased"):
        config["negative_candidates"][generator]["enabled"] = False
    config["negatives_verified"]["enabled"] = False
    with StageBars() as bars:
        run_pipeline(store, PipelineConfig.model_validate(config), run, force=True, on_progress=bars, page_ids=ids)
    (REPHRASINGS / "stages" / "rephrased").mkdir(parents=True, exist_ok=True)
    shutil.copy(run / "fingerprints.json", REPHRASINGS / "fingerprints.json")
    for shard in RunDir(run).shards("rephrased"):  # the finished ones, for the next run
        for path in (run / "stages" / "rephrased").glob(f"{shard}.*"):
            shutil.copy(path, REPHRASINGS / "stages" / "rephrased" / path.name)
    return run


def merged(rephrasings: Path, work: Path) -> Path:
    """The run of ``rephrasings`` with the committed set's selected negatives added back, shard by shard."""
    run = work / "run"
    shutil.rmtree(run, ignore_errors=True)
    shutil.copytree(rephrasings, run, ignore=shutil.ignore_patterns("cache.sqlite*", ".lock"))
    finished = set(RunDir(run).shards("selected"))
    for path in (run / "stages").glob("*/shard-*"):  # a set being generated has a half-done shard: not data
        if path.name.partition(".")[0] not in finished:
            path.unlink()
    for path in sorted((run / "stages" / "selected").glob("shard-*.jsonl")):
        if path.name.endswith(".rejected.jsonl"):
            continue
        committed = (SET / "run" / "stages" / "selected" / path.name).read_text().splitlines()
        negatives = [line for line in committed if json.loads(line)["kind"] == "negative"]
        path.write_text("\n".join(path.read_text().splitlines() + negatives) + "\n")
    return run


def fusion_folder(base: str, recipe: str, pull: str, targets: str = "hard") -> str:
    """``fusion-[BASE-]RECIPE[-pullR][-TARGETS]``, the names bench/decision.py reads back."""
    name = "fusion-" + ("" if base == "MiniLM" else f"{base}-") + recipe + (f"-pull{pull}" if float(pull) else "")
    return name + ("" if targets == "hard" else f"-{targets}")


def fit(data: Path, out: Path, base: str, pull: str, *options: str) -> dict:
    """A fusion of ``base`` fitted on ``data`` with the pull ``pull`` (3 epochs, batch 4), in this process (a
    base's vectors are encoded once); its training summary."""
    train = ["train", "--data", data, "--out", out, "--reranker", "fusion", "--epochs", "3", "--batch", "4"]
    train += ["--regularization", pull, *options] + ([] if base == "MiniLM" else ["--model", base])
    if not (out / "reranker.json").exists():
        result = CliRunner().invoke(app, [str(a) for a in train], env={"COLUMNS": "200"})
        if result.exit_code:
            raise subprocess.CalledProcessError(result.exit_code, train, result.output)
    return json.loads((out / "training.json").read_text())


def distilled(made: dict[str, Path], store, work: Path, bases: list[str], pulls: list[str]) -> None:
    """The focused 1.5B teacher's scores of the wording-matched pair of mixtures (``reworded``,
    ``mined-reworded``: one cache, their positives are the same), then on each the MiniLM cross-encoder (as
    bench/quality.py trains it) and every base's fusion at every pull, learning the teacher's scores
    (``teacher``) and those and the hard labels (``both``)."""
    cache = work / "teacher-reworded" / "teacher-scores.sqlite"
    for recipe in ("reworded", "mined-reworded"):
        labeled = work / f"teacher-{recipe}"
        if cache.exists() and not (labeled / cache.name).exists():
            labeled.mkdir(parents=True, exist_ok=True)
            shutil.copy(cache, labeled / cache.name)
        docrerank("label", "--data", made[recipe], "--out", labeled, "--pages", store.root, "--page-view", "focused",
                  "--no-progress")  # fmt: skip
        for targets in ("teacher", "both"):
            train_student(labeled, work / f"ce-{recipe}-{targets}", "--lr", "2e-4", "--targets", targets)
            for base, pull in itertools.product(bases, pulls):
                name = fusion_folder(base, recipe, pull, targets)
                fit(labeled, work / name, base, pull, "--held-out", "0", "--targets", targets)
                print("fitted", name, flush=True)


def chosen_pull(data: Path, work: Path, base: str, pulls: list[str], seeds: int) -> str:
    """The pull whose fits rank best on held-out documents' reworded questions (generated, so not the test's):
    30% of the documents held out, ``seeds`` splits, mean nDCG@5 after training."""
    means = {}
    for pull in pulls:
        runs = [fit(data, work / f"{base}-pull{pull}-seed{seed}", base, pull, "--held-out", "0.3", "--seed",
                    str(seed), "--first-stage", "bm25") for seed in range(seeds)]  # fmt: skip
        means[pull] = sum(r["after"]["nDCG@5"] for r in runs) / seeds
        print(f"{base} pull {pull}: held-out reworded nDCG@5 {means[pull]:.3f} ({seeds} splits)", flush=True)
    return max(pulls, key=lambda pull: (means[pull], float(pull)))  # a tie goes to the stronger pull


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", type=Path, default=ROOT / "runs" / "demo" / "pages")
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "quality-reworded")
    parser.add_argument("--bases", default="MiniLM,embeddinggemma", help="the fusions' bi-encoders")
    parser.add_argument("--pulls", default="0", help="fusion regularizations to fit (`train --regularization`)")
    parser.add_argument(
        "--teacher", action="store_true", help="students of the focused 1.5B's scores too (reworded, mined-reworded)"
    )
    parser.add_argument("--select", type=int, default=0, help="choose a base's pull on N held-out splits (0: no)")
    parser.add_argument(
        "--rephrasings-only", action="store_true", help="make (or extend) the committed rephrasings, then stop"
    )
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    store = sample_store(args.store)
    rephrasings = rephrased_again(store, args.out)
    if args.rephrasings_only:
        return
    run = merged(rephrasings, args.out)
    made = mixtures(store, args.out, run)
    total = json.loads((made["mined-only"] / "provenance.json").read_text())["summary"]["examples"]
    config = args.out / "mined-reworded.yaml"
    config.write_text(yaml.safe_dump({"mix": {"rephrased": True, "originals": False}}))
    made["mined-reworded"] = args.out / "mix-mined-reworded"
    mix = ["mix", "--pages", store.root, "--run-dir", run, "--mined", args.out / "mined", "--recipe", "mined-only"]
    docrerank(*mix, "--config", config, "--total", total, "--out", made["mined-reworded"], "--overwrite")
    pulls = args.pulls.split(",")
    for base, recipe, pull in itertools.product(args.bases.split(","), RECIPES, pulls):
        name = fusion_folder(base, recipe, pull)
        if recipe in made:
            fit(made[recipe], args.out / name, base, pull, "--held-out", "0")
            print("fitted", name, flush=True)
    if args.teacher:
        distilled(made, store, args.out, args.bases.split(","), pulls)
    if args.select:
        chosen = {base: chosen_pull(made["reworded"], args.out / "select", base, pulls, args.select)
                  for base in args.bases.split(",")}  # fmt: skip
        (args.out / "chosen-pulls.json").write_text(json.dumps(chosen) + "\n")
        print("chosen on held-out reworded questions:", chosen)


if __name__ == "__main__":
    main()
