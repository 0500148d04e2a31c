"""Fitting a fusion reranker's weights (``docrerank train --reranker fusion``).

The document frequencies of BM25's feature are counted over the training pages, the features of every
training pair are computed once (the bi-encoder is not trained), then the weights and
the bias are fitted by Adam over batches of whole groups with the same loss as the other students
(``trainer.batch_loss``: the paper's loss, another group loss, or a teacher's scores), plus
``regularization`` times the squared distance of the weights from the start (the bi-encoder alone): generated
positives copy their page's words, so the word weights they teach overshoot on questions people reword.
It has the shape of a transformers trainer as far as ``trainer.train`` uses one (``train``,
``is_world_process_zero``, ``args.world_size``), so the held-out evaluations, the guard and the saving are the
same for every student.
Checkpoints are not written: the whole fit takes seconds once the features are there.
"""

from __future__ import annotations

import math
import random
import time
from types import SimpleNamespace

from docrerank.rerankers.fusion import START, FusionReranker, TermWeights

__all__ = ["FUSION_LEARNING_RATE", "FusionTrainer"]

FUSION_LEARNING_RATE = 0.05  # a handful of weights on features in [0, 1]: Adam's steps move them in tenths


class FusionTrainer:
    """Fits ``reranker.weights`` and ``bias`` on ``rows`` (each a group's ``scored_pairs``)."""

    def __init__(self, reranker: FusionReranker, rows: list, settings, callbacks: list):
        self.reranker, self.rows, self.settings, self.callbacks = reranker, rows, settings, callbacks
        self.args = SimpleNamespace(world_size=1)

    def is_world_process_zero(self) -> bool:
        return True

    def train(self, resume_from_checkpoint=None):
        """The features once, then epochs over seeded batches of ``groups_per_batch`` groups; the reranker holds
        the result after every step (the callbacks evaluate it every ``eval_steps``). No checkpoint to resume
        from: a rerun fits again, in seconds after the features."""
        import torch

        from docrerank.training.trainer import batch_loss  # trainer imports this module

        started, settings = time.perf_counter(), self.settings
        pairs = [(query, page) for row in self.rows for query, page, _, _ in row]
        # BM25's document frequencies: over the pages it trains on (the untrained start weighs every word the same)
        pages = {page.page_id: page.text for _, page in pairs}
        self.reranker.term_weights = TermWeights.from_texts(pages.values())
        features = torch.as_tensor(self.reranker.features(pairs), dtype=torch.float64)
        untrained = torch.tensor(START, dtype=torch.float64)
        weights = torch.tensor(self.reranker.weights, dtype=torch.float64, requires_grad=True)
        bias = torch.tensor(self.reranker.bias, dtype=torch.float64, requires_grad=True)
        optimizer = torch.optim.Adam([weights, bias], lr=settings.learning_rate)
        starts, start = [], 0
        for row in self.rows:
            starts.append(start)
            start += len(row)
        steps_per_epoch = math.ceil(len(self.rows) / settings.groups_per_batch)
        total = settings.max_steps if settings.max_steps > 0 else math.ceil(settings.epochs * steps_per_epoch)
        rng, order, step, groups = random.Random(settings.seed), [], 0, 0
        while step < total:
            if not order:
                order = list(range(len(self.rows)))
                rng.shuffle(order)
            batch, order = order[: settings.groups_per_batch], order[settings.groups_per_batch :]
            index = [starts[g] + i for g in batch for i in range(len(self.rows[g]))]
            margins = features[index] @ weights + bias
            labels = [label for g in batch for _, _, label, _ in self.rows[g]]
            teachers = [teacher for g in batch for _, _, _, teacher in self.rows[g]]
            loss = batch_loss(margins, labels, teachers, [len(self.rows[g]) for g in batch], settings)
            loss = loss + settings.regularization * ((weights - untrained) ** 2).sum()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            step, groups = step + 1, groups + len(batch)
            self.reranker.weights = weights.detach().numpy().copy()
            self.reranker.bias = float(bias.detach())
            state = SimpleNamespace(global_step=step, is_world_process_zero=True)
            for callback in self.callbacks:
                callback.on_step_end(None, state, None)
        seconds = max(time.perf_counter() - started, 1e-9)  # the features included: they are most of it
        return SimpleNamespace(global_step=step, metrics={"train_samples_per_second": groups / seconds})
