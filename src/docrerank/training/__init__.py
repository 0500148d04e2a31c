"""Reranker training: groups read from the project's datasets, teacher scores, the paper's and distillation
losses, a held-out evaluator."""

from docrerank.training.data import TrainingGroup, read_groups, require_teacher_scores, split_by_document
from docrerank.training.teacher import LabelSummary, label_dataset, label_groups, teacher_identity
from docrerank.training.trainer import TrainSettings, TrainSummary, train

__all__ = [
    "LabelSummary",
    "TrainSettings",
    "TrainSummary",
    "TrainingGroup",
    "label_dataset",
    "label_groups",
    "read_groups",
    "require_teacher_scores",
    "split_by_document",
    "teacher_identity",
    "train",
]
