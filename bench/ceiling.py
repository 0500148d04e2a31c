"""What limits the fusion: its features, or the generated questions it learns from?

    python bench/ceiling.py --students runs/quality-reworded120

A fusion fitted on the generated set gains about +0.027 NDCG@5 over EmbeddingGemma on the 94 rephrased test
questions (README, "How much of that is the fit's luck"). This asks how much any weights of the same six features
could gain there: the weights are fitted on the people's questions themselves, each test document's questions
ranked by weights fitted on the other documents' (leave one document out, so no question ranks with weights
that saw it), and once on all of them (in-sample: an optimistic figure for the features, not a result). If the
cross-validated fit gains no more than the generated set's, the features are the limit and no training data
will lift this student; if it gains much more, the generated questions are. The same is done with three more
features a richer student could have (the first stage's own score, from 256-word chunks; the second-best
128-word chunk's cosine; the mean cosine of the page's chunks), to see whether more of the same kind helps, and
with the score of each trained cross-encoder of ``--cross-encoders`` (a model that reads question and page
together) as a seventh feature.

The candidates are EmbeddingGemma's committed top 10 (bench/data/declared-chain); the features are computed once
with the fusion's own code (EmbeddingGemma over the candidates' chunks, ~25 min on 2 cores; BM25's document
frequencies those of the `mined-only` fit) and kept in OUT/features.npz. The generated-set fits of
``--students`` are scored from the same features, a check that they reproduce their decision.py figures.
Weights are fitted by a listwise loss (softmax cross-entropy against each question's graded judgements, a
negligible L2 ``--l2`` toward the fusion's start). Paired randomization test against EmbeddingGemma alone.
Written to OUT/ceiling.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import numpy as np

from docrerank.cli.demo import rephrased_twins
from docrerank.evaluation import PRIMARY, mean, paired_p_value, per_query
from docrerank.evaluation.loaders import load_store
from docrerank.rerankers import FusionReranker, Reranker
from docrerank.rerankers.base import page_text
from docrerank.rerankers.fusion import FEATURES, START
from docrerank.retrieval.dense import chunk_words
from docrerank.retrieval.runs import read_trec
from quality import DATA, ROOT
from seeds import CANDIDATES

EXTRA = ("first_stage", "second_cosine", "mean_cosine")
RECIPES = ("mined-only", "full", "reworded")


def features(benchmark, run, fusions: dict[str, FusionReranker], out: Path) -> tuple[list, dict[str, np.ndarray]]:
    """Each (question, candidate)'s six ``FEATURES`` as each fusion computes them (BM25's document frequencies
    are its own), and the ``EXTRA`` ones; computed once and kept in ``out``."""
    pairs = [(q, page) for q in benchmark.judged_queries for page, _ in run[q]]
    cached = out / "features.npz"
    if cached.exists():
        return pairs, dict(np.load(cached))
    texts = [(benchmark.queries[q], benchmark.page(page)) for q, page in pairs]
    values = {recipe: fusion.features(texts) for recipe, fusion in fusions.items()}  # one base: encoded once
    encoder, rows = next(iter(fusions.values())).encoder, []
    first = {(q, page): score for q in benchmark.judged_queries for page, score in run[q]}
    for pair, (query, page) in zip(pairs, texts, strict=True):
        chunks = chunk_words(page_text(page), encoder.chunk_words, encoder.stride)
        cosines = sorted((encoder.encode(chunks, query=False) @ encoder.encode([query], query=True)[0]).tolist())
        rows.append([first[pair], cosines[-2] if len(cosines) > 1 else cosines[-1], statistics.mean(cosines)])
    values["extra"] = np.asarray(rows)
    np.savez(cached, **values)
    return pairs, values


def cross_encoder_scores(benchmark, pairs, folder: Path, out: Path) -> np.ndarray:
    """A trained cross-encoder's score of each pair (it reads the question and the page together), kept in ``out``."""
    cached = out / f"scores-{folder.name}.npy"
    if not cached.exists():
        reranker = Reranker.load(folder)
        np.save(cached, np.asarray(reranker.score([(benchmark.queries[q], benchmark.page(page)) for q, page in pairs])))
    return np.load(cached)


def fit(x: np.ndarray, gains: np.ndarray, groups: np.ndarray, start: np.ndarray, l2: float) -> np.ndarray:
    """Weights maximising each question's softmax likelihood of its graded judgements (L-BFGS from ``start``)."""
    import torch

    xs, target = torch.as_tensor(x), torch.as_tensor(gains)
    weights = torch.tensor(start, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([weights], max_iter=500, line_search_fn="strong_wolfe")
    index = torch.as_tensor(groups)
    useful = [g for g in np.unique(groups) if gains[groups == g].sum() > 0]

    def closure():
        optimizer.zero_grad()
        scores = xs @ weights
        loss = (
            sum(
                -(target[index == g] / target[index == g].sum() * torch.log_softmax(scores[index == g], 0)).sum()
                for g in useful
            )
            / len(useful)
            + l2 * ((weights - torch.as_tensor(start)) ** 2).sum()
        )
        loss.backward()
        return loss

    optimizer.step(closure)
    return weights.detach().numpy()


def ranked(pairs, scores) -> dict[str, list[tuple[str, float]]]:
    """Each question's candidates by score (stable: ties keep the first stage's order)."""
    run: dict[str, list[tuple[str, float]]] = {}
    for (q, page), score in zip(pairs, scores, strict=True):
        run.setdefault(q, []).append((page, float(score)))
    return {q: sorted(pages, key=lambda item: -item[1]) for q, pages in run.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--students", type=Path, default=ROOT / "runs" / "quality-reworded120")
    parser.add_argument("--pages", type=Path, default=ROOT / "runs" / "decision94" / "pages", help="the test pages")
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "ceiling")
    parser.add_argument("--l2", type=float, default=1e-6)
    parser.add_argument("--cross-encoders", default="", help="trained cross-encoder folders, ',': each a feature more")
    args = parser.parse_args()
    rows = [json.loads(line) for line in (DATA / "quality-queries.jsonl").read_text().splitlines() if line.strip()]
    judgments = (DATA / "quality-qrels.trec").read_text().splitlines(keepends=True)
    benchmark = load_store(args.pages, *rephrased_twins(args.out / "questions", rows, judgments))
    run, queries = read_trec(CANDIDATES)[0], benchmark.judged_queries
    fusions = {r: Reranker.load(args.students / f"fusion-embeddinggemma-{r}-pull1") for r in RECIPES}
    pairs, x = features(benchmark, run, fusions, args.out)
    gains = np.array([float(benchmark.qrels[q].get(page, 0)) for q, page in pairs])  # trec_eval's gains
    position = {q: i for i, q in enumerate(queries)}
    groups = np.array([position[q] for q, _ in pairs])
    document = {q: benchmark.corpus[max(benchmark.qrels[q], key=benchmark.qrels[q].get)].doc_id for q in queries}
    documents = np.array([document[q] for q, _ in pairs])

    def ndcg(scores) -> dict[str, float]:
        return per_query(ranked(pairs, scores), benchmark.qrels, queries, (PRIMARY,))[PRIMARY]

    first = per_query(run, benchmark.qrels, queries, (PRIMARY,))[PRIMARY]
    systems, weights = {}, {}
    for recipe, fusion in fusions.items():  # the generated set's fits, from the same features: a check
        systems[f"fitted on the generated set: {recipe}"] = ndcg(x[recipe] @ fusion.weights + fusion.bias)
    designs = {
        "six features": (x["mined-only"], FEATURES),
        "six + three more": (np.hstack([x["mined-only"], x["extra"]]), FEATURES + EXTRA),
    }
    for folder in map(Path, filter(None, args.cross_encoders.split(","))):
        scores = cross_encoder_scores(benchmark, pairs, folder, args.out)
        systems[f"{folder.name} alone"] = ndcg(scores)
        designs[f"six + {folder.name}'s score"] = (
            np.hstack([x["mined-only"], scores[:, None]]),
            (*FEATURES, folder.name),
        )
    for label, (design, names) in designs.items():  # no bias: a question's order ignores it
        start = np.array([*START, *[0.0] * (len(names) - len(START))])
        held_out = np.zeros(len(pairs))
        for doc in sorted(set(document.values())):  # leave one document out
            held = documents == doc
            held_out[held] = design[held] @ fit(design[~held], gains[~held], groups[~held], start, args.l2)
        systems[f"{label}, fitted on the people's questions, one document out"] = ndcg(held_out)
        name = f"{label}, fitted on all of them (in-sample)"
        weights[name] = fit(design, gains, groups, start, args.l2)
        systems[name] = ndcg(design @ weights[name])
        weights[name] = dict(zip(names, map(float, weights[name]), strict=True))
    report = {"questions": len(queries), "documents": len(set(document.values())), "first stage": mean(first)}
    print(
        f"{len(queries)} rephrased questions of {report['documents']} documents; EmbeddingGemma alone {mean(first):.3f}"
    )
    for name, values in systems.items():
        row = {"NDCG@5": mean(values), "vs first stage": mean(values) - mean(first), "p": paired_p_value(values, first)}
        report[name] = row | ({"weights": weights[name]} if name in weights else {})
        print(f"{name}: {row['NDCG@5']:.3f} ({row['vs first stage']:+.3f}, p = {row['p']:.3f})")
    (args.out / "ceiling.json").write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
