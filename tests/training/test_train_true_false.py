"""Training the paper's True/False VLM reranker on a tiny random Qwen2-VL built from a config, on CPU.

Random weights learn nothing general; what is checked is that the real training path works: LoRA on the
language model, the paper's loss falls on a toy set of page images, and the score the saved reranker ranks by
is the margin the trainer optimised.
"""

from __future__ import annotations

import json

import pytest

from docrerank.pages.content import PageContent
from docrerank.rerankers import Reranker, TrueFalseReranker
from docrerank.training import TrainingGroup
from docrerank.training.losses import group_loss
from docrerank.training.trainer import TrainSettings, train
from tests.rerankers.test_true_false import page_image

torch = pytest.importorskip("torch")
pytest.importorskip("peft")


def _toy_groups() -> list[TrainingGroup]:
    """Four pages, each with a query it answers and two it does not (the other pages' questions)."""
    questions = [
        "Which test detects the structural break?",
        "What does the red box on the left show?",
        "How wide are the boundaries of the fluctuation process?",
        "Is the F statistic plotted over time?",
    ]
    pages = [PageContent(text="", image=page_image(60 * i), page_id=f"p{i}") for i in range(4)]
    return [
        TrainingGroup(q, pages[i], f"doc{i}", negative_queries=(questions[(i + 1) % 4], questions[(i + 2) % 4]))
        for i, q in enumerate(questions)
    ]


def _loss(reranker: TrueFalseReranker, groups: list[TrainingGroup]) -> float:
    rows = [g.pairs() for g in groups]
    pairs = [(q, p) for row in rows for q, p, _ in row]
    labels = [label for row in rows for *_, label in row]
    reranker.model.eval()
    with torch.no_grad():
        margins = reranker.margins(reranker.encode(pairs))
    return group_loss(margins, labels, [len(r) for r in rows]).item()


@pytest.mark.slow
def test_the_vlm_learns_a_toy_set_and_ranks_by_the_margin_it_trained(tmp_path):
    from docrerank.testing.tiny_models import tiny_qwen2vl_path

    reranker = TrueFalseReranker(model=str(tiny_qwen2vl_path()), batch_size=4)
    groups = _toy_groups()
    before = _loss(reranker, groups)
    settings = TrainSettings(learning_rate=2e-3, epochs=6, groups_per_batch=2, held_out=0, save_steps=1000, warmup=0)
    summary = train(reranker, groups, tmp_path / "vlm", settings)
    after = _loss(reranker, groups)
    assert summary.steps == 12 and summary.processes == 1
    assert after < 0.8 * before, (before, after)

    # LoRA went on the language model only, and the folder holds the adapter, not a copy of the base
    trainable = [name for name, p in reranker.model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in name and "visual" not in name for name in trainable)
    saved = json.loads((tmp_path / "vlm" / "training.json").read_text())
    assert saved["steps"] == 12 and saved["before"] is None  # nothing held out, nothing evaluated

    # the margin training optimised is the score the loaded reranker ranks by
    pairs = [(q, p) for g in groups for q, p, _ in g.pairs()]
    with torch.no_grad():
        trained = torch.sigmoid(reranker.margins(reranker.encode(pairs))).tolist()
    loaded = Reranker.load(tmp_path / "vlm")
    assert isinstance(loaded, TrueFalseReranker) and loaded.has_lora
    assert loaded.score(pairs) == pytest.approx(trained, abs=1e-5)
    ranked = loaded.rank(groups[0].query, [g.page for g in groups])
    assert len(ranked) == 4


@pytest.mark.slow
def test_the_vlm_learns_teacher_scores_by_margin_mse(tmp_path):
    """The True/False path distils too: with teacher scores on the toy set (0.9 for the positive, 0.2 and 0.05
    for its negatives), ``targets="teacher"`` lowers the margin-MSE to the teacher's logits."""
    from dataclasses import replace

    from docrerank.testing.tiny_models import tiny_qwen2vl_path
    from docrerank.training.losses import distillation_loss

    reranker = TrueFalseReranker(model=str(tiny_qwen2vl_path()), batch_size=4)
    groups = [replace(g, teacher_score=0.9, negative_query_teacher_scores=(0.2, 0.05)) for g in _toy_groups()]

    def loss() -> float:
        rows = [g.scored_pairs() for g in groups]
        reranker.model.eval()
        with torch.no_grad():
            margins = reranker.margins(reranker.encode([(q, p) for row in rows for q, p, _, _ in row]))
        teachers = [t for row in rows for *_, t in row]
        return distillation_loss(margins.float(), teachers, [len(r) for r in rows], "margin-mse").item()

    before = loss()
    settings = TrainSettings(
        targets="teacher", learning_rate=2e-3, epochs=6, groups_per_batch=2, held_out=0, save_steps=1000, warmup=0
    )
    assert train(reranker, groups, tmp_path / "vlm", settings).steps == 12
    assert loss() < 0.8 * before, (before, loss())
