"""The paper's reranker: a VLM (or a causal LM over page text) asked whether the page answers the query.

DocReRank and MonoQwen2-VL fine-tune Qwen2-VL-2B-Instruct with LoRA to answer "True" or "False" after the
page image and the query; the score is P(True) of that two-way choice, i.e. the sigmoid of the margin
logit(True) - logit(False) at the next token. ``margins`` is that one function for training and scoring,
so a trained model is trained on the very number ``score`` reports. Published adapters (MonoQwen2-VL-v0.1,
DocReRank-Reranker) load with ``adapter=``. Prompts, image preprocessing and left-padded batches come from
the transformers backend (Qwen2-VL without torchvision), so the reranker and the zero-shot backend see a
page the same way.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from docrerank.backends.messages import Message, TextPart
from docrerank.backends.transformers_local import PreparedChat, TransformersBackend, TransformersConfig
from docrerank.errors import DocrerankError, import_optional
from docrerank.pages.content import PageContent, PageLike
from docrerank.pages.record import Page
from docrerank.prompts.requests import DEFAULT_MAX_PAGE_CHARS, cut_page_text
from docrerank.rerankers.base import PairScore, Reranker, missing_text, page_name

if TYPE_CHECKING:
    from docrerank.pages.store import PageStore

__all__ = ["DEFAULT_MODEL", "LORA_TARGETS", "TrueFalseReranker"]

DEFAULT_MODEL = "Qwen/Qwen2-VL-2B-Instruct"
ADAPTER_CONFIG = "adapter_config.json"
# MonoQwen2-VL's wording; a text page is a "document".
IMAGE_PROMPT = (
    "Assert the relevance of the previous image document to the following query, answer True or False. "
    "The query is: {query}"
)
TEXT_PROMPT = IMAGE_PROMPT.replace("previous image document", "previous document")
# The language model's attention and MLP projections, never the vision tower's (Qwen2.5-VL's vision MLP also
# has gate/up/down_proj): peft matches the whole module name against this.
LORA_TARGETS = (
    r"^(?!.*\b(?:visual|vision_tower|vision_model)\b).*\.layers\.\d+\."
    r"(?:self_attn\.(?:q_proj|k_proj|v_proj|o_proj)|mlp\.(?:gate_proj|up_proj|down_proj))$"
)


def _device(name: str) -> str:
    """``auto``: this process's GPU (``LOCAL_RANK`` under torchrun) when there is one, else the CPU."""
    if name != "auto":
        return name
    import torch

    if not torch.cuda.is_available():
        return "cpu"
    return f"cuda:{os.environ['LOCAL_RANK']}" if "LOCAL_RANK" in os.environ else "cuda"


def _local(name: str) -> str:
    """A local folder as an absolute path (so a saved reranker finds it from anywhere); a hub name as is."""
    path = Path(name).expanduser()
    return str(path.resolve()) if path.is_dir() else name


class TrueFalseReranker(Reranker):
    """P(True) of a Qwen2-VL-family VLM over the page image, or of a causal LM over the page text."""

    kind = "true-false"
    uses = frozenset({"image"})  # the default model's; a causal LM's instance reads {"text"}

    def __init__(
        self,
        model: str | None = None,
        adapter: str | None = None,
        store: PageStore | None = None,
        lora: bool = False,
        batch_size: int = 8,
        max_page_chars: int = DEFAULT_MAX_PAGE_CHARS,
        min_pixels: int | None = None,
        max_pixels: int | None = None,
        device: str = "cpu",
        dtype: str = "auto",
    ):
        """``model``: a Qwen2-VL-family VLM or a causal LM (local folder, or a hub name in the HF cache or
        where a network exists); default the adapter's base, else Qwen2-VL-2B-Instruct. ``adapter``: a LoRA
        adapter folder or hub name. ``store``: the ``PageStore`` a VLM reads the images of ``Page``s from.
        ``device`` ``auto`` takes the GPU when there is one; ``dtype`` ``auto`` is bfloat16 there, else float32.
        """
        if max_page_chars < 1:
            raise DocrerankError(f"max_page_chars must be at least 1, got {max_page_chars}")
        adapter_config = self._adapter_config(adapter) if adapter is not None else None
        if model is None:
            model = adapter_config.base_model_name_or_path if adapter_config is not None else DEFAULT_MODEL
            if not model:
                raise DocrerankError(f"the adapter {adapter} names no base model: give `model` as well")
        self.base_model, self.store, self.max_page_chars = _local(model), store, max_page_chars
        try:
            config = TransformersConfig(
                model=self.base_model,
                batch_size=batch_size,
                min_pixels=min_pixels,
                max_pixels=max_pixels,
                device=_device(device),
                dtype=dtype,
            )
        except ValueError as exc:
            raise DocrerankError(f"bad True/False reranker settings: {exc}") from None
        self.backend = TransformersBackend(config)
        self.model = self.backend.model  # the scored (and trained) model: the base, or it wrapped by peft
        self.is_vlm = self.backend.kind == "vlm"
        self.uses = frozenset({"image"} if self.is_vlm else {"text"})
        self.true_id, self.false_id = (self._token_id(word) for word in ("True", "False"))
        if adapter is not None:
            peft = import_optional("peft", "gpu")
            try:  # trainable, so training goes on from a published adapter; scoring runs without gradients
                self.model = peft.PeftModel.from_pretrained(self.model, adapter, is_trainable=True)
            except (OSError, ValueError) as exc:
                raise DocrerankError(f"cannot load the LoRA adapter {adapter!r} on {model!r}: {exc}") from None
        if lora and not self.has_lora:
            self.add_lora()

    @staticmethod
    def _adapter_config(adapter: str):
        peft = import_optional("peft", "gpu")
        local = Path(adapter).expanduser()
        if local.is_dir() and not (local / ADAPTER_CONFIG).is_file():
            raise DocrerankError(f"{adapter} has no {ADAPTER_CONFIG}: give a folder with a LoRA adapter (peft)")
        try:
            return peft.PeftConfig.from_pretrained(adapter)
        except (OSError, ValueError) as exc:
            raise DocrerankError(
                f"cannot read the LoRA adapter {adapter!r} ({exc}): give a local adapter folder, or a hub name "
                "where a network exists"
            ) from None

    def _token_id(self, word: str) -> int:
        ids = self.backend.tokenizer.encode(word, add_special_tokens=False)
        if len(ids) != 1:
            raise DocrerankError(
                f"the tokenizer of {self.base_model} spells {word!r} as {len(ids)} tokens {ids}; the True/False "
                "reranker needs a model whose tokenizer has single tokens for True and False (Qwen2, Qwen2-VL)"
            )
        return ids[0]

    @property
    def has_lora(self) -> bool:
        """Whether the model carries LoRA adapters (added, or loaded with ``adapter``)."""
        return hasattr(self.model, "peft_config")

    def add_lora(self, r: int = 32, alpha: int = 32, dropout: float = 0.1, seed: int = 0):
        """Wrap the model with LoRA adapters on the language model's seven projections and return it (the
        model to train, also ``self.model``). All else is frozen, the vision tower included. The adapters are
        drawn the same way every time (``seed``): LoRA B starts at zero, so the scores do not change yet."""
        import torch

        if self.has_lora:
            raise DocrerankError("the model already has LoRA adapters: train those, or start from the base model")
        peft = import_optional("peft", "gpu")
        config = peft.LoraConfig(
            r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=LORA_TARGETS, task_type="CAUSAL_LM"
        )
        with torch.random.fork_rng(devices=[]):  # peft draws LoRA A on the CPU, before moving it to the model
            torch.manual_seed(seed)
            self.model = peft.get_peft_model(self.model, config)
        return self.model

    # -- inputs ---------------------------------------------------------------------------------------

    def _content(self, page: PageLike) -> PageContent:
        if isinstance(page, Page):
            if self.is_vlm and self.store is not None:
                return PageContent.from_page(page, self.store, image=True)
            return PageContent(text=page.text, page_id=page.page_id)
        if isinstance(page, str):
            return PageContent(text=page)
        if isinstance(page, PageContent):
            return page
        raise TypeError(f"a page is a PageContent, a Page or its text, not {type(page).__name__}")

    def _chat(self, query: str, page: PageLike) -> list[Message]:
        """One user turn: the page (image, or text cut to ``max_page_chars``), then the question."""
        content = self._content(page)
        if self.is_vlm:
            if content.image is None:
                raise DocrerankError(
                    f"page {content.page_id or '(no id)'} has no image, and the True/False reranker over "
                    f"{self.base_model} reads page images: give the reranker the page store "
                    "(TrueFalseReranker(..., store=store)) or pages as PageContent.from_page(page, store, image=True)"
                )
            return [Message(role="user", content=[content.image, TextPart(text=IMAGE_PROMPT.format(query=query))])]
        text = cut_page_text(content.text, self.max_page_chars)[0] if content.text.strip() else ""
        return [Message(role="user", content=[TextPart(text=text), TextPart(text=TEXT_PROMPT.format(query=query))])]

    def _prepare(self, pairs: Sequence[tuple[str, PageLike]]) -> list[PreparedChat]:
        prepared = self.backend.prepare([self._chat(query, page) for query, page in pairs])
        for item, (_, page) in zip(prepared, pairs, strict=True):
            if item.error is not None:
                raise DocrerankError(f"page {getattr(page, 'page_id', None) or '(no id)'}: {item.error}")
        return prepared

    def encode(self, pairs: Sequence[tuple[str, PageLike]]) -> dict[str, Any]:
        """The left-padded model inputs (tensors) of the pairs, one row each, in order: what ``margins`` takes."""
        if not pairs:
            raise DocrerankError("encode needs at least one (query, page) pair")
        return self.backend.model_inputs(self._prepare(pairs))

    # -- scores ---------------------------------------------------------------------------------------

    def margins(self, inputs: dict[str, Any], model=None):
        """logit(True) - logit(False) at the next token of each row of ``inputs`` (from ``encode``), float32.

        P(True) of the two-way choice is its sigmoid. Gradients flow when enabled; ``model`` is the model to
        run (training passes its DDP-wrapped one), default ``self.model``; inputs go to its device.
        """
        model = self.model if model is None else model
        device = next(model.parameters()).device
        inputs = {name: tensor.to(device) for name, tensor in inputs.items()}
        logits = self.backend.last_logits(inputs, model).float()
        return logits[:, self.true_id] - logits[:, self.false_id]

    def score(self, pairs: Sequence[tuple[str, PageLike]]) -> list[float]:
        """P(True) per pair, in order; pairs of similar length share a batch of ``batch_size``. A pair that
        cannot be scored gets -inf (``score_results`` says why)."""
        return [result.score for result in self.score_results(pairs)]

    def score_results(self, pairs: Sequence[tuple[str, PageLike]]) -> list[PairScore]:
        """P(True) per pair, or why it could not be scored (a VLM's page without an image, a text model's page
        without text, a prompt over the model's length); the other pairs are scored."""
        import torch

        results: list[PairScore | None] = [None] * len(pairs)
        chats, asked = [], []
        for index, (query, page) in enumerate(pairs):
            problem = None if self.is_vlm else missing_text(page)
            if problem is None:
                try:
                    chats.append(self._chat(query, page))
                    asked.append(index)
                    continue
                except (DocrerankError, OSError) as exc:  # no image, an image file that cannot be read
                    problem = str(exc)
            results[index] = PairScore.failed(problem)
        if chats:
            prepared = self.backend.prepare(chats)
            for item in prepared:
                if item.error is not None:
                    index = asked[item.index]
                    results[index] = PairScore.failed(f"{page_name(pairs[index][1])}: {item.error}")
            training = self.model.training
            self.model.eval()
            try:
                with torch.no_grad():
                    for batch in self.backend.batches(prepared):
                        margins = self.margins(self.backend.model_inputs(batch))
                        for item, value in zip(batch, torch.sigmoid(margins).tolist(), strict=True):
                            results[asked[item.index]] = PairScore(value)
            finally:
                self.model.train(training)  # scoring in the middle of training leaves it in train mode
        return [r for r in results if r is not None]

    # -- saving ---------------------------------------------------------------------------------------

    def settings(self) -> dict[str, Any]:
        config = self.backend.config
        return {
            "model": self.base_model,
            "batch_size": config.batch_size,
            "max_page_chars": self.max_page_chars,
            "min_pixels": config.min_pixels,
            "max_pixels": config.max_pixels,
        }

    def save(self, path: str | Path) -> None:
        """The LoRA adapter (or the whole model when it has none), the tokenizer and image processor files,
        and ``reranker.json`` naming the base model."""
        self.model.save_pretrained(str(path))
        self.backend.tokenizer.save_pretrained(str(path))
        if self.backend.image_processor is not None:
            self.backend.image_processor.save_pretrained(str(path))
        super().save(path)

    @classmethod
    def from_saved(
        cls, settings: dict[str, Any], folder: Path, where: str, *, allow_remote: bool = False
    ) -> TrueFalseReranker:
        return cls.from_folder(folder, **settings)

    @classmethod
    def from_folder(cls, path: str | Path, **settings: Any) -> TrueFalseReranker:
        """What ``save`` wrote into ``path``: the base model with the adapter there, or the whole model there."""
        if (Path(path) / ADAPTER_CONFIG).is_file():
            return cls(adapter=str(path), **settings)
        return cls(**{**settings, "model": str(path)})
