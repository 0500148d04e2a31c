"""The fusion reranker: its features, its untrained start (the bi-encoder alone), training through `docrerank
train --reranker fusion`, and the saved weights."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
import yaml

from docrerank.errors import DocrerankError
from docrerank.pipeline.evidence import content_words
from docrerank.rerankers import BiEncoderReranker, FusionReranker, Reranker
from docrerank.rerankers.fusion import FEATURES, TermWeights, pair_features
from docrerank.training.fusion import FusionTrainer
from docrerank.training.trainer import TrainSettings, train
from tests.helpers import invoke_cli

PAGE = (
    "Table 3 lists the median survival of the 42 patients: 18 months in the treated group and 11 months in "
    "the control group. The hazard ratio was 0.61."
)


def test_features_see_the_value_a_negative_changed():
    positive = "What was the median survival in the treated group?"
    changed = "What was the median survival of the 57 patients in the treated group?"
    unrelated = "Which compiler flags enable link-time optimisation?"
    rows = {q: pair_features(q, PAGE, PAGE, 0.5, {}) for q in (positive, changed, unrelated)}
    named = {q: dict(zip(FEATURES, row, strict=True)) for q, row in rows.items()}
    assert named[positive]["missing_values"] == 0 and named[changed]["missing_values"] == 1
    assert named[positive]["words"] == 1.0 and named[unrelated]["words"] == 0.0
    assert named[positive]["bigrams"] > named[unrelated]["bigrams"] == 0.0
    assert named[changed]["cosine"] == 0.5
    assert 0 < named[changed]["bm25"] < named[positive]["bm25"] <= 1 and named[unrelated]["bm25"] == 0
    assert pair_features("what is it?", PAGE, PAGE, 0.3, {}) == [0.3, 0, 0, 0, 0, 0]  # no content words


def test_bm25_weighs_rare_words_above_common_ones():
    common = "the median of the patients in the group"
    weights = TermWeights.from_texts([PAGE, common, common + " daily", "median values were followed"])
    assert weights.pages == 4 and weights.idf(*content_words("hazard")) > weights.idf(*content_words("median"))
    bm25 = FEATURES.index("bm25")
    rare = pair_features("hazard dosage", PAGE, PAGE, 0, {}, weights)[bm25]  # each query word once on the page,
    frequent = pair_features("median dosage", PAGE, PAGE, 0, {}, weights)[bm25]  # the other one not at all
    assert rare > frequent > 0
    uniform = [pair_features(q, PAGE, PAGE, 0, {})[bm25] for q in ("hazard dosage", "median dosage")]
    assert uniform[0] == pytest.approx(uniform[1])  # before training every word weighs the same


@pytest.mark.slow  # loads MiniLM
def test_the_untrained_start_is_the_bi_encoder_and_saved_weights_load(tmp_path):
    pages = [PAGE, "Install the package with apt-get and restart the service to apply the settings."]
    pairs = [(q, p) for q in ("median survival treated group", "how to restart the service") for p in pages]
    start = FusionReranker()
    assert start.score(pairs) == pytest.approx(BiEncoderReranker().score(pairs))
    other = FusionReranker()  # the same base: its vectors come from the memo the start filled
    assert other.encoder.memo is start.encoder.memo and (False, pages[1]) in other.encoder.memo
    assert other.score(pairs) == start.score(pairs)
    start.weights = np.array([0.5, 1.0, 0.7, 0.2, 0.3, -1.0])
    start.term_weights = TermWeights.from_texts(pages)
    start.bias = -0.25
    start.save(tmp_path / "fusion")
    loaded = Reranker.load(tmp_path / "fusion")
    assert isinstance(loaded, FusionReranker) and loaded.score(pairs) == pytest.approx(start.score(pairs))
    document = json.loads((tmp_path / "fusion" / "reranker.json").read_text())
    document["features"] = ["cosine", "something else"]
    (tmp_path / "fusion" / "reranker.json").write_text(json.dumps(document))
    with pytest.raises(DocrerankError, match="other features"):
        Reranker.load(tmp_path / "fusion")


@pytest.mark.slow  # the session's training sets (the 839 sample pages ingested)
@pytest.mark.timeout(900)
def test_train_fits_weights_that_put_queries_above_their_negative_queries(training_sets, tmp_path):
    """Two epochs on the labeled training set's `full` mixture: on the held-out documents, the fitted weights
    must rank a page's positive query above its negative queries more often than the bi-encoder alone (the
    start: 0.59 of the pairs; 0.70 after); the guard runs and the result loads as a reranker."""
    out = tmp_path / "fusion"
    config = tmp_path / "train.yaml"
    settings = {"held_out": 0.3, "epochs": 2, "groups_per_batch": 4, "first_stage": "bm25"}
    config.write_text(yaml.safe_dump({"train": settings}))
    result = invoke_cli(
        "train", "--data", training_sets.mixture, "--out", out, "--config", config, "--reranker", "fusion"
    )
    assert result.exit_code == 0, result.stdout[-3000:]
    summary = json.loads((out / "training.json").read_text())
    assert summary["steps"] > 0 and summary["settings"]["learning_rate"] == 0.05
    assert "trained fusion" in result.stdout and "first stage (bm25)" in result.stdout
    assert "weights: cosine +" in result.stdout and "missing_values -" in result.stdout
    before, after = summary["before"]["query_contrast"], summary["after"]["query_contrast"]
    print(f"held-out query contrast {before:.3f} -> {after:.3f}")
    assert after >= before + 0.05, (before, after)
    trained = Reranker.load(out)
    assert isinstance(trained, FusionReranker)
    assert not np.allclose(trained.weights, [1, 0, 0, 0, 0, 0]) and trained.term_weights.pages > 10


@pytest.mark.slow  # loads MiniLM
def test_regularization_pulls_the_fitted_weights_toward_the_bi_encoder_alone():
    """The same groups fitted twice: free, the word weights move far from the start; pulled hard, they stay
    near it (the order is then the bi-encoder's). Any other student refuses the setting."""
    page = SimpleNamespace(page_id="p1", text=PAGE)
    swaps = ("What was the median survival of the 57 patients?", "What was the hazard ratio in 2019?")
    rows = [
        [("What was the median survival of the 42 patients?", page, 1.0, None)] + [(q, page, 0.0, None) for q in swaps],
        [("What was the hazard ratio?", page, 1.0, None)] + [(q, page, 0.0, None) for q in swaps],
    ]
    distances = {}
    for strength in (0.0, 10.0):
        fusion = FusionReranker()
        settings = TrainSettings(learning_rate=0.05, epochs=40, groups_per_batch=2, regularization=strength)
        FusionTrainer(fusion, rows, settings, callbacks=[]).train()
        distances[strength] = float(np.abs(fusion.weights - np.array([1, 0, 0, 0, 0, 0])).max())
    assert distances[0.0] > 0.5 and distances[10.0] < 0.1, distances
    with pytest.raises(DocrerankError, match="regularization"):
        train(BiEncoderReranker(), [], "unused", TrainSettings(regularization=1.0, held_out=0))
