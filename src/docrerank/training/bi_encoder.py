"""Adapting a bi-encoder to a corpus with the generated data (``docrerank train --reranker bi-encoder``).

sentence-transformers' trainer with ``MultipleNegativesRankingLoss`` (in-batch negatives plus each row's
hard one) over two kinds of rows, one dataset each, batches drawn from both in proportion:

- ``query_to_page``: a positive query, its page, and a mined page: the page above the pages a first stage
  confuses it with (what mined negatives teach);
- ``page_to_query``: a page, its positive query, and one of its negative queries: the question the page
  answers above the near-identical ones it cannot (what DocReRank's generated negatives teach).

A page is longer than the model reads, so each is represented by its best chunk for the row's query under the
starting model (chosen once, before training, as the reranker scores: ``BiEncoderReranker.best_chunks``).
Queries and chunks carry the model's own query / document prompts, as at search time. A batch holds
``groups_per_batch * (1 + negatives)`` rows (32 by default: as many texts as a cross-encoder batch), with
no text twice (a duplicate would be its own in-batch negative).
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING

from docrerank.errors import DocrerankError, import_optional

if TYPE_CHECKING:
    from docrerank.rerankers.bi_encoder import BiEncoderReranker
    from docrerank.training.data import TrainingGroup

__all__ = ["bi_encoder_rows", "bi_encoder_trainer", "prompts", "trainer_options"]


def bi_encoder_rows(
    reranker: BiEncoderReranker, groups: list[TrainingGroup], negatives: int, seed: int
) -> dict[str, list[dict[str, str]]]:
    """The (anchor, positive, negative) rows of both kinds; up to ``negatives`` of each kind per group, seeded."""
    rng = random.Random(seed)
    page_pairs = [(g.query, g.page) for g in groups]
    mined = [[(g.query, p) for p in _sample(rng, g.negative_pages, negatives)] for g in groups]
    flat = page_pairs + [pair for pairs in mined for pair in pairs]
    _, chunks = reranker.best_chunks(flat)
    own, rest = chunks[: len(groups)], iter(chunks[len(groups) :])
    rows: dict[str, list[dict[str, str]]] = {"query_to_page": [], "page_to_query": []}
    for group, page_chunk, pages in zip(groups, own, mined, strict=True):
        for _ in pages:
            rows["query_to_page"].append({"anchor": group.query, "positive": page_chunk, "negative": next(rest)})
        for negative in _sample(rng, group.negative_queries, negatives):
            rows["page_to_query"].append({"anchor": page_chunk, "positive": group.query, "negative": negative})
    return rows


def _sample(rng: random.Random, items, k: int) -> list:
    items = list(items)
    return rng.sample(items, min(k, len(items)))


def trainer_options(reranker: BiEncoderReranker, settings) -> dict:
    """What the bi-encoder's training arguments add to the shared ones: the batch size in rows, no text twice in
    a batch, batches drawn from both kinds of rows in proportion, the model's prompts."""
    try:
        from sentence_transformers.sentence_transformer.training_args import BatchSamplers, MultiDatasetBatchSamplers
    except ImportError:  # sentence-transformers 5
        from sentence_transformers.training_args import BatchSamplers, MultiDatasetBatchSamplers
    return {
        "per_device_train_batch_size": settings.groups_per_batch * (1 + settings.negatives),
        "batch_sampler": BatchSamplers.NO_DUPLICATES,
        "multi_dataset_batch_sampler": MultiDatasetBatchSamplers.PROPORTIONAL,
        "prompts": prompts(reranker),
    }


def prompts(reranker: BiEncoderReranker) -> dict[str, dict[str, str]] | None:
    """The model's query and document prompts on each column of both kinds of rows (None: it has none)."""
    query, document = reranker.model.prompts.get("query"), reranker.model.prompts.get("document")
    if not (query or document):
        return None
    columns = ("anchor", "positive", "negative")
    sides = {"query_to_page": (query, document, document), "page_to_query": (document, query, query)}
    return {name: {c: p for c, p in zip(columns, side, strict=True) if p} for name, side in sides.items()}


def bi_encoder_trainer(reranker: BiEncoderReranker, groups: list[TrainingGroup], settings, arguments, callbacks):
    """A ``SentenceTransformerTrainer`` over ``bi_encoder_rows`` (kinds with no rows left out)."""
    sentence_transformers = import_optional("sentence_transformers", "train")
    datasets = import_optional("datasets", "data")
    rows = bi_encoder_rows(reranker, groups, settings.negatives, settings.seed)
    data = datasets.DatasetDict({name: datasets.Dataset.from_list(r) for name, r in rows.items() if r})
    if not data:
        raise DocrerankError(
            "the training groups hold no negative pages and no negative queries: a bi-encoder learns from them; "
            "train on an export or a mixture that has them (`docrerank mix --recipe full`)"
        )
    from sentence_transformers.losses import MultipleNegativesRankingLoss  # imported above: the extra is there

    loss = MultipleNegativesRankingLoss(reranker.model)
    return sentence_transformers.SentenceTransformerTrainer(
        model=reranker.model, args=arguments, train_dataset=data, loss=loss, callbacks=callbacks
    )
