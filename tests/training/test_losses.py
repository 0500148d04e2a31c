"""The training losses against their definitions written out by hand; the distillation losses also on a toy set."""

from __future__ import annotations

import pytest
import torch

from docrerank.training.losses import distillation_loss, group_loss, teacher_logits
from docrerank.training.trainer import TrainSettings, batch_loss

TRUE = torch.tensor([2.0, 0.5, -1.0, 0.3, 1.2])
FALSE = torch.tensor([0.5, 1.5, 0.0, -0.2, 0.1])
LABELS = [1, 0, 0, 1, 0]
SIZES = [3, 2]


def test_paper_loss_is_the_weighted_two_way_softmax_over_true_and_false():
    logits = torch.stack([TRUE, FALSE], dim=1)  # class 0 = True, 1 = False
    targets = torch.tensor([0 if label else 1 for label in LABELS])
    weights = torch.tensor([3.0 if label else 1.0 for label in LABELS])
    per_pair = torch.nn.functional.cross_entropy(logits, targets, reduction="none")
    expected = (weights * per_pair).mean()
    assert group_loss(TRUE - FALSE, LABELS, SIZES, "paper", 3.0).item() == pytest.approx(expected.item(), rel=1e-6)


def test_bce_weighs_positives_and_negatives_alike():
    margins = TRUE - FALSE
    p = torch.sigmoid(margins)
    y = torch.tensor(LABELS, dtype=torch.float)
    expected = -(y * p.log() + (1 - y) * (1 - p).log()).mean()
    assert group_loss(margins, LABELS, SIZES, "bce").item() == pytest.approx(expected.item(), rel=1e-6)


def test_listwise_is_the_positives_softmax_share_in_its_own_group():
    margins = TRUE - FALSE
    first = -torch.log_softmax(margins[:3], 0)[0]
    second = -torch.log_softmax(margins[3:], 0)[0]
    expected = (first + second) / 2
    assert group_loss(margins, LABELS, SIZES, "listwise").item() == pytest.approx(expected.item(), rel=1e-6)


def test_an_unknown_loss_is_named():
    with pytest.raises(ValueError, match="unknown loss 'hinge'"):
        group_loss(TRUE, LABELS, SIZES, "hinge")


PROBS = [0.9, 0.2, None, 0.7, 0.4]  # teacher P(True) per pair; None: the teacher gave none


def _logit(p: float) -> float:
    return torch.logit(torch.tensor(p)).item()


def test_mse_distillation_is_the_squared_error_to_the_teachers_logits_without_unscored_pairs():
    margins = TRUE - FALSE
    known = [(m, _logit(p)) for m, p in zip(margins.tolist(), PROBS, strict=True) if p is not None]
    expected = sum((m - t) ** 2 for m, t in known) / len(known)
    assert distillation_loss(margins, PROBS, SIZES, "mse").item() == pytest.approx(expected, rel=1e-5)
    assert teacher_logits([0.0, 1.0]).tolist() == pytest.approx([_logit(1e-6), _logit(1 - 1e-6)], rel=1e-4)


def test_margin_mse_compares_positive_minus_negative_margins_with_the_teachers():
    m = (TRUE - FALSE).tolist()
    t = [None if p is None else _logit(p) for p in PROBS]
    # group 1: positive 0, negatives 1 and 2 (2 has no teacher score); group 2: positive 3, negative 4
    gaps = [((m[0] - m[1]) - (t[0] - t[1])) ** 2, ((m[3] - m[4]) - (t[3] - t[4])) ** 2]
    assert distillation_loss(TRUE - FALSE, PROBS, SIZES, "margin-mse").item() == pytest.approx(sum(gaps) / 2, rel=1e-5)
    nothing = distillation_loss(TRUE - FALSE, [None] * 5, SIZES, "margin-mse")
    assert nothing.item() == 0.0
    with pytest.raises(ValueError, match="unknown distillation loss 'kl'"):
        distillation_loss(TRUE, PROBS, SIZES, "kl")


@pytest.mark.parametrize("kind", ["mse", "margin-mse"])
def test_each_distillation_loss_falls_and_the_student_orders_each_group_as_the_teacher(kind):
    """A toy set: 12 groups of 4 pairs, each pair 8 features; the teacher's P(True) is a hidden linear
    function of them; the student a linear layer trained by Adam on the loss alone."""
    generator = torch.Generator().manual_seed(0)
    features = torch.randn(48, 8, generator=generator)
    teacher = torch.sigmoid(features @ torch.randn(8, generator=generator) + 0.5).tolist()
    sizes = [4] * 12
    torch.manual_seed(0)
    student = torch.nn.Linear(8, 1)
    optimizer = torch.optim.Adam(student.parameters(), lr=0.05)
    losses = []
    for _ in range(150):
        optimizer.zero_grad()
        loss = distillation_loss(student(features).view(-1), teacher, sizes, kind)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.05 * losses[0], (losses[0], losses[-1])
    with torch.no_grad():
        margins = student(features).view(-1)
    logits = teacher_logits(teacher)
    for student_group, teacher_group in zip(margins.split(sizes), logits.split(sizes), strict=True):
        for i in range(4):
            for j in range(4):
                if teacher_group[i] > teacher_group[j] + 0.2:  # pairs the teacher tells apart clearly
                    assert student_group[i] > student_group[j], (student_group, teacher_group)


def test_batch_loss_follows_the_targets():
    margins, labels = TRUE - FALSE, LABELS
    hard = group_loss(margins, labels, SIZES, "paper", 3.0).item()
    soft = distillation_loss(margins, PROBS, SIZES, "margin-mse").item()
    for targets, expected in (("hard", hard), ("teacher", soft), ("both", hard + 0.5 * soft)):
        settings = TrainSettings(targets=targets, teacher_weight=0.5)
        assert batch_loss(margins, labels, PROBS, SIZES, settings).item() == pytest.approx(expected, rel=1e-5)
