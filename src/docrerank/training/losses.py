"""Reranker training losses over a batch of groups (one positive and its negatives each).

Every reranker here gives one *margin* per (query, page) pair: logit(True) - logit(False) for the VLM and
causal-LM True/False rerankers, the single logit for a cross-encoder. Then:

``paper``     DocReRank's loss: cross-entropy of the two-way softmax over the True and False logits, the
              positives weighted ``pos_weight`` (3) to 1. softmax([t, f])[0] = sigmoid(t - f), so it is
              binary cross-entropy on the margin with that positive weight.
``bce``       the same without weighting (positives and negatives count alike).
``listwise``  per group, cross-entropy of the softmax over the group's margins with the positive as the
              target (each positive against its own negatives; InfoNCE / ListNet with one relevant item).

Distillation from a teacher's scores (``docrerank label``: P(True) of a zero-shot LLM per pair), whose
targets are the teacher's *logits*, logit(P(True)) = log(p / (1 - p)), p clipped to [1e-6, 1 - 1e-6]
(logits within about +-13.8), on the scale of the student's margin:

``mse``         mean squared error between each pair's student margin and teacher logit (pointwise: the
                student learns the teacher's scores themselves).
``margin-mse``  per group, mean squared error between the student's margin differences positive minus each
                negative and the teacher's (Hofstaetter et al. 2020, "Improving Efficient Neural Ranking
                Models with Cross-Architecture Knowledge Distillation"): only the teacher's *differences*
                are learnt, so a student on its own scale can still order pages as the teacher does.

A pair without a teacher score (``nan``) is left out of the distillation loss (for ``margin-mse``: a
negative without one, or every pair of a group whose positive has none).
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["DISTILLATIONS", "LOSSES", "distillation_loss", "group_loss", "teacher_logits"]

LOSSES = ("paper", "bce", "listwise")
DISTILLATIONS = ("mse", "margin-mse")
TEACHER_EPSILON = 1e-6


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


def teacher_logits(probabilities, dtype=None, device=None):
    """logit(p) of teacher probabilities (a sequence or tensor; None or nan stays nan), p clipped to
    [1e-6, 1 - 1e-6]."""
    import torch

    values = [float("nan") if p is None else float(p) for p in probabilities]
    p = torch.tensor(values, dtype=dtype or torch.float32, device=device).clamp(TEACHER_EPSILON, 1 - TEACHER_EPSILON)
    return torch.log(p) - torch.log1p(-p)  # nan stays nan through clamp and log


def distillation_loss(margins, teacher_probabilities, group_sizes: Sequence[int], kind: str = "margin-mse"):
    """The distillation loss of a batch: the student's ``margins`` against the teacher's P(True) per pair,
    both flat over the groups (the positive first in each), whose sizes are given; a pair whose teacher
    score is None or nan is left out, and a batch with nothing to learn gives 0 (with a gradient)."""
    import torch

    targets = teacher_logits(teacher_probabilities, margins.dtype, margins.device)
    if kind == "mse":
        known = ~targets.isnan()
        if not known.any():
            return margins.sum() * 0.0
        return ((margins[known] - targets[known]) ** 2).mean()
    if kind == "margin-mse":
        differences = []
        for student, teacher in zip(margins.split(list(group_sizes)), targets.split(list(group_sizes)), strict=True):
            student_gap, teacher_gap = student[0] - student[1:], teacher[0] - teacher[1:]
            known = ~teacher_gap.isnan()
            differences.append(student_gap[known] - teacher_gap[known])
        flat = torch.cat(differences) if differences else margins.new_zeros(0)
        return (flat**2).mean() if flat.numel() else margins.sum() * 0.0
    raise ValueError(f"unknown distillation loss {kind!r}: use one of {', '.join(DISTILLATIONS)}")
