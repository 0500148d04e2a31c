"""Reranker training losses over a batch of groups (one positive and its negatives each).

Every reranker here gives one *margin* per (query, page) pair: logit(True) - logit(False) for the VLM and
causal-LM True/False rerankers, the single logit for a cross-encoder. Then:

``paper``     DocReRank's loss: cross-entropy of the two-way softmax over the True and False logits, the
              positives weighted ``pos_weight`` (3) to 1. softmax([t, f])[0] = sigmoid(t - f), so it is
              binary cross-entropy on the margin with that positive weight.
``bce``       the same without weighting (positives and negatives count alike).
``listwise``  per group, cross-entropy of the softmax over the group's margins with the positive as the
              target (each positive against its own negatives; InfoNCE / ListNet with one relevant item).
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["LOSSES", "group_loss"]

LOSSES = ("paper", "bce", "listwise")


def group_loss(margins, labels, group_sizes: Sequence[int], kind: str = "paper", pos_weight: float = 3.0):
    """The loss of a batch: ``margins`` and ``labels`` (1/0) flat over the groups, whose sizes are given."""
    import torch
    import torch.nn.functional as F

    labels = torch.as_tensor(labels, dtype=margins.dtype, device=margins.device)
    if kind in ("paper", "bce"):
        weight = torch.tensor(pos_weight if kind == "paper" else 1.0, dtype=margins.dtype, device=margins.device)
        return F.binary_cross_entropy_with_logits(margins, labels, pos_weight=weight)
    if kind == "listwise":
        losses = []
        for group_margins, group_labels in zip(
            margins.split(list(group_sizes)), labels.split(list(group_sizes)), strict=True
        ):
            target = group_labels / group_labels.sum().clamp(min=1)
            losses.append(-(target * F.log_softmax(group_margins, dim=0)).sum())
        return torch.stack(losses).mean()
    raise ValueError(f"unknown loss {kind!r}: use one of {', '.join(LOSSES)}")
