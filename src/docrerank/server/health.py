"""Readiness: what ``/health`` tells an operator beyond the counts. ``reranker_warnings`` says whether the
reranker will rank anything at all; ``warm_up_pair`` is the pair ``--preload`` scores so that the model is loaded
before the first request, not during it."""

from __future__ import annotations

import io

from PIL import Image

from docrerank.backends.messages import ImagePart
from docrerank.pages.content import PageContent, PageLike
from docrerank.rerankers.base import Reranker

__all__ = ["reranker_warnings", "warm_up_pair"]


def reranker_warnings(reranker: Reranker) -> list[str]:
    """What an operator should know about a reranker before serving it: a cross-encoder whose scoring head was
    never trained (a base encoder's checkpoint, not a sequence classifier's) scores every page near 0.5."""
    model = getattr(reranker, "model", None)
    if reranker.kind != "cross-encoder" or model is None:
        student = getattr(reranker, "student", None)  # the cascade's first stage
        return reranker_warnings(student) if isinstance(student, Reranker) else []
    config = getattr(model, "config", None)
    architectures = getattr(config, "architectures", None) or []
    if any(name.endswith("ForSequenceClassification") for name in architectures):
        return []
    return [
        "the cross-encoder's scoring head was never trained: its scores are near 0.5 for every document and rank "
        "nothing; serve a trained one (`docrerank train`, then --reranker saved --model FOLDER)"
    ]


def warm_up_pair(reranker: Reranker) -> tuple[str, PageLike]:
    text = "docrerank warm-up: a short page of text, scored once so that the model is loaded before requests."
    if "image" in reranker.uses:
        buffer = io.BytesIO()
        Image.new("RGB", (64, 64), "white").save(buffer, format="PNG")
        return "warm-up", PageContent(text=text, image=ImagePart(data=buffer.getvalue(), mime="image/png"))
    return "warm-up", text
