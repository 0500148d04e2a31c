"""Every reranker kind in one table: its class, whether `docrerank train` fits it, whether `rerank` / `serve`
build it from their options. ``Reranker.load`` and the commands read the kinds here, so a new kind is added
in one place.
"""

from __future__ import annotations

from dataclasses import dataclass

from docrerank.rerankers.base import Reranker
from docrerank.rerankers.bi_encoder import BiEncoderReranker
from docrerank.rerankers.cascade import CascadeReranker
from docrerank.rerankers.cross_encoder import CrossEncoderReranker
from docrerank.rerankers.fusion import FusionReranker
from docrerank.rerankers.true_false import TrueFalseReranker
from docrerank.rerankers.zero_shot import LLMReranker

__all__ = ["RERANKER_KINDS", "RerankerKind"]


@dataclass(frozen=True)
class RerankerKind:
    """One kind of reranker, named by its class's ``kind`` (what ``reranker.json`` says)."""

    cls: type[Reranker]
    trainable: bool  # `docrerank train --reranker KIND` fits it
    built_by_rerank: bool  # `rerank` / `serve --reranker KIND` build it (the others: --reranker saved)

    @property
    def name(self) -> str:
        return self.cls.kind


RERANKER_KINDS: dict[str, RerankerKind] = {
    kind.name: kind
    for kind in (
        RerankerKind(CrossEncoderReranker, trainable=True, built_by_rerank=True),
        RerankerKind(BiEncoderReranker, trainable=True, built_by_rerank=True),
        RerankerKind(FusionReranker, trainable=True, built_by_rerank=False),
        RerankerKind(TrueFalseReranker, trainable=True, built_by_rerank=False),
        RerankerKind(LLMReranker, trainable=False, built_by_rerank=True),
        RerankerKind(CascadeReranker, trainable=False, built_by_rerank=True),
    )
}
