"""The training losses against their definitions written out by hand."""

from __future__ import annotations

import pytest
import torch

from docrerank.training.losses import group_loss

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
