"""Zero-shot reranking with a chat model: the paper's "zero-shot" baseline row, usable without training.

Any backend that can score choices (the embedded llama.cpp model, an OpenAI-compatible server with
logprobs, local transformers) is shown the page, then the query, and asked for True or False (MonoQwen's
wording, template ``rerank_true_false``); the score is P(True) of the two-way choice at the next token.
With a backend that takes images, ``use_image`` shows the page image instead of its text.

It holds no weights: ``save`` writes the backend's config and the prompt settings into ``reranker.json``, and
``Reranker.load`` builds the same backend from them (the model loads on first use).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from docrerank.backends import Backend, load_backend
from docrerank.backends.base import Capability
from docrerank.errors import DocrerankError
from docrerank.pages.content import PageLike
from docrerank.prompts.focus import DEFAULT_FOCUS_CHARS, PageView
from docrerank.prompts.library import PromptTemplate
from docrerank.prompts.requests import DEFAULT_MAX_PAGE_CHARS, rerank_request
from docrerank.rerankers.base import PairScore, Reranker, page_name

__all__ = ["LLMReranker"]


class LLMReranker(Reranker):
    kind = "llm"
    uses = frozenset({"text"})

    def __init__(
        self,
        backend: Backend,
        template: str = "rerank_true_false",
        use_image: bool = False,
        max_page_chars: int = DEFAULT_MAX_PAGE_CHARS,
        page_view: PageView = "whole",
        focus_chars: int = DEFAULT_FOCUS_CHARS,
    ):
        backend.require(Capability.LOGPROBS, *([Capability.IMAGES] if use_image else []), stage="zero-shot reranking")
        self.backend, self.template, self.use_image, self.max_page_chars = backend, template, use_image, max_page_chars
        self.page_view, self.focus_chars = page_view, focus_chars
        self.uses = frozenset({"image"} if use_image else {"text"})

    @classmethod
    def from_saved(
        cls, settings: dict[str, Any], folder: Path, where: str, *, allow_remote: bool = False
    ) -> LLMReranker:
        """No weights: the saved backend config (``backend``) is built again."""
        settings = dict(settings)
        return cls(load_backend(settings.pop("backend")), **settings)

    def settings(self) -> dict[str, Any]:
        template = self.template.source if isinstance(self.template, PromptTemplate) else str(self.template)
        return {
            "backend": self.backend.config.model_dump(mode="json"),
            "template": template.removeprefix("docrerank:"),
            "use_image": self.use_image,
            "max_page_chars": self.max_page_chars,
            # named only when focused: the identity (score caches) of a whole-page reranker stays what it was
            **({"page_view": "focused", "focus_chars": self.focus_chars} if self.page_view == "focused" else {}),
        }

    def score(self, pairs: Sequence[tuple[str, PageLike]]) -> list[float]:
        """P(True) per pair; a pair that could not be scored gets -inf, so it ranks last (``score_results``)."""
        return [result.score for result in self.score_results(pairs)]

    def score_results(self, pairs: Sequence[tuple[str, PageLike]]) -> list[PairScore]:
        """P(True) per pair, or why it could not be scored: a page with nothing to show (no text, or no image
        with ``use_image``), or the backend's error on that request. The other pairs are scored."""
        results: list[PairScore | None] = [None] * len(pairs)
        requests, asked = [], []
        for index, (query, page) in enumerate(pairs):
            try:
                request = rerank_request(
                    page, query, self.template, self.use_image, max_page_chars=self.max_page_chars,
                    page_view=self.page_view, focus_chars=self.focus_chars,
                )  # fmt: skip
            except DocrerankError as exc:
                results[index] = PairScore.failed(str(exc))
                continue
            requests.append(request)
            asked.append(index)
        for index, result in zip(asked, self.backend.score_choices(requests) if requests else [], strict=True):
            if result.ok:
                results[index] = PairScore(float(result.probs["True"]))
            else:
                results[index] = PairScore.failed(f"{page_name(pairs[index][1])}: {result.error}")
        return [r for r in results if r is not None]
