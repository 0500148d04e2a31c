"""Reranker training: groups read from the project's datasets, the paper's losses, a held-out evaluator."""

from docrerank.training.data import TrainingGroup, read_groups, split_by_document
from docrerank.training.trainer import TrainSettings, TrainSummary, train

__all__ = ["TrainSettings", "TrainSummary", "TrainingGroup", "read_groups", "split_by_document", "train"]
