"""Zero-shot reranking with a chat model: the paper's "zero-shot" baseline row, usable without training.

Any backend that can score choices (the embedded llama.cpp model, an OpenAI-compatible server with
logprobs, local transformers) is shown the page, then the query, and asked for True or False (MonoQwen's
wording, template ``rerank_true_false``); the score is P(True) of the two-way choice at the next token.
With a backend that takes images, ``use_image`` shows the page image instead of its text.

It holds no weights: ``save`` writes the backend's config and the prompt settings into ``reranker.json``, and
``Reranker.load`` builds the same backend from them (the model loads on first use).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from docrerank.backends import Backend
from docrerank.backends.base import Capability
from docrerank.prompts.library import PromptTemplate
from docrerank.prompts.requests import DEFAULT_MAX_PAGE_CHARS, PageLike, rerank_request
from docrerank.rerankers.base import Reranker

__all__ = ["LLMReranker"]

log = logging.getLogger(__name__)


class LLMReranker(Reranker):
    kind = "llm"
    uses = frozenset({"text"})

    def __init__(
        self,
        backend: Backend,
        template: str = "rerank_true_false",
        use_image: bool = False,
        max_page_chars: int = DEFAULT_MAX_PAGE_CHARS,
    ):
        backend.require(Capability.LOGPROBS, *([Capability.IMAGES] if use_image else []), stage="zero-shot reranking")
        self.backend, self.template, self.use_image, self.max_page_chars = backend, template, use_image, max_page_chars
        self.uses = frozenset({"image"} if use_image else {"text"})

    def settings(self) -> dict[str, Any]:
        template = self.template.source if isinstance(self.template, PromptTemplate) else str(self.template)
        return {
            "backend": self.backend.config.model_dump(mode="json"),
            "template": template.removeprefix("docrerank:"),
            "use_image": self.use_image,
            "max_page_chars": self.max_page_chars,
        }

    def score(self, pairs: Sequence[tuple[str, PageLike]]) -> list[float]:
        """P(True) per pair; a pair the backend could not score gets -inf (logged), so it ranks last."""
        requests = [
            rerank_request(page, query, self.template, self.use_image, max_page_chars=self.max_page_chars)
            for query, page in pairs
        ]
        scores = []
        for (query, _), result in zip(pairs, self.backend.score_choices(requests), strict=True):
            if result.ok:
                scores.append(float(result.probs["True"]))
            else:
                log.warning("zero-shot reranking could not score a page for %r: %s", query, result.error)
                scores.append(float("-inf"))
        return scores
