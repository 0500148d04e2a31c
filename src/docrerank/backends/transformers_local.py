"""Hugging Face transformers in process: text LLMs and Qwen2-VL-family VLMs, on the GPU or the CPU.

Requests are prepared one by one (chat rendered, tokenized, image token counts worked out from the image
sizes), sorted by prompt length and run ``batch_size`` at a time with left padding, so the last position of
every row is its next token; results come back in the caller's order. A request that cannot run (a prompt
over the model's positions, an image that does not decode) gets its own ``error``; if a whole batch fails
(e.g. out of memory) its requests are retried one at a time before any of them is given up.

Text LLMs use the tokenizer's own chat template. VLMs of the Qwen2-VL family (``qwen2_vl``,
``qwen2_5_vl``) need no torchvision: the chat is rendered here in Qwen2-VL's ChatML form, page images go
through ``Qwen2VLImageProcessorPil``, each image's ``<|image_pad|>`` is expanded to its token count, and
``mm_token_type_ids`` marks the image tokens for the model's multimodal RoPE. Text is tokenized between the
template's special tokens with special-token parsing off, so page text that happens to contain
``<|im_end|>`` stays text.

Callers that run the model themselves (the True/False reranker, which trains through the same inputs) use
``prepare``, ``batches``, ``model_inputs`` and ``last_logits``, the steps ``next_token_logprobs`` takes.

torch and transformers are imported when a model is first needed; ``registry`` imports this module for the
config alone.
"""

from __future__ import annotations

import asyncio
import inspect
import io
import json
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field, model_validator

from docrerank.backends.base import Backend, BackendConfig, Capability, choice_variants, scores_from_logprobs
from docrerank.backends.messages import (
    ChatRequest,
    ChoiceRequest,
    ChoiceScores,
    Generation,
    ImagePart,
    Message,
    SamplingParams,
    Usage,
)
from docrerank.errors import DocrerankError

__all__ = ["NextTokenLogprobs", "PreparedChat", "TransformersBackend", "TransformersConfig"]

log = logging.getLogger(__name__)

INSTALL_HINT = 'pip install "docrerank[gpu]"'
_TORCH_NOTE = "install torch first where no GPU is at hand: pip install torch==2.13.0 is the CPU build"

# Model types whose config.json makes them VLMs even without a ``vision_config`` key.
_VLM_MODEL_TYPES = frozenset({"qwen2_vl", "qwen2_5_vl", "qwen3_vl", "qwen3_vl_moe", "llava", "idefics3", "smolvlm"})
# VLMs this backend can run (the chat is rendered here, without the torchvision-based processor).
_QWEN2_VL_FAMILY = frozenset({"qwen2_vl", "qwen2_5_vl"})
_DEFAULT_SYSTEM = "You are a helpful assistant."
_IMAGE_TOKEN = "<|image_pad|>"
_VISION_START = "<|vision_start|>"
_VISION_END = "<|vision_end|>"


class TransformersConfig(BackendConfig):
    """A transformers model run in process (``pip install "docrerank[gpu]"``)."""

    type: Literal["transformers"] = "transformers"
    model: str = Field(description="a Hugging Face hub id (where a network exists) or a local model folder")
    kind: Literal["auto", "vlm", "causal"] = Field(
        "auto", description="auto reads config.json: Qwen2-VL and other image-text-to-text models are VLMs"
    )
    device: str | None = Field(None, description="e.g. cuda, cuda:1, cpu; default: cuda if available, else cpu")
    dtype: Literal["auto", "bfloat16", "float16", "float32"] = Field(
        "auto", description="auto: bfloat16 on a GPU, float32 on the CPU"
    )
    batch_size: int = Field(8, ge=1, description="requests per forward pass (or per generate call)")
    min_pixels: int | None = Field(None, ge=1, description="VLM image processor: least pixels an image is resized to")
    max_pixels: int | None = Field(None, ge=1, description="VLM image processor: most pixels (fewer image tokens)")
    trust_remote_code: bool = False
    attn_implementation: str | None = Field(None, description="e.g. sdpa, eager, flash_attention_2")

    @model_validator(mode="after")
    def _pixels_in_order(self) -> TransformersConfig:
        if self.min_pixels is not None and self.max_pixels is not None and self.min_pixels > self.max_pixels:
            raise ValueError(f"min_pixels ({self.min_pixels}) is over max_pixels ({self.max_pixels})")
        return self


def _import_torch():
    try:
        import torch
    except ImportError as exc:
        raise DocrerankError(f"the transformers backend needs torch: {INSTALL_HINT}; {_TORCH_NOTE} ({exc})") from None
    return torch


def _import_transformers():
    _import_torch()
    try:
        import transformers
    except ImportError as exc:
        raise DocrerankError(
            f"the transformers backend needs transformers: {INSTALL_HINT}; {_TORCH_NOTE} ({exc})"
        ) from None
    return transformers


@dataclass
class NextTokenLogprobs:
    """The next-token log-probabilities after one chat (and its assistant prefix), or why there are none.

    ``logprobs`` is a float32 CPU tensor over the whole vocabulary, or over the ``token_ids`` asked for.
    """

    logprobs: Any = None  # torch.Tensor
    prompt_tokens: int = 0
    error: str | None = None


@dataclass
class PreparedChat:
    """One chat made ready for a batch: its prompt tokens and the images they stand for, or why it cannot run."""

    index: int  # position in the caller's list
    input_ids: list[int] = field(default_factory=list)
    mm_types: list[int] = field(default_factory=list)  # 1 on image tokens
    images: list[ImagePart] = field(default_factory=list)
    grids: list[tuple[int, int, int]] = field(default_factory=list)  # (t, h, w) patches per image
    error: str | None = None


class TransformersBackend(Backend):
    type_name: ClassVar[str] = "transformers"
    install_hint: ClassVar[str] = INSTALL_HINT
    config_class: ClassVar[type[BackendConfig]] = TransformersConfig
    config: TransformersConfig
    # a VLM; a causal LM reads no images
    best_capabilities: ClassVar[frozenset[Capability]] = frozenset({Capability.IMAGES, Capability.LOGPROBS})

    def __init__(self, config: TransformersConfig, cache=None):
        super().__init__(config, cache)
        self._kind: str | None = None if config.kind == "auto" else config.kind
        self._model_config: dict[str, Any] | None = None
        self._model = None
        self._tokenizer = None
        self._image_processor = None
        self._device = None
        self._dtype = None
        self._max_positions: int | None = None
        self._eos_ids: list[int] = []
        self._pad_id = 0
        self._takes_logits_to_keep = False
        self._special: dict[str, int] = {}
        self._choice_ids: dict[tuple[str, ...], dict[str, list[int]]] = {}
        self._lock = threading.Lock()

    # -- what the backend is --------------------------------------------------------------------------

    @property
    def kind(self) -> str:
        """``vlm`` or ``causal``: the config's, or read from the model's config.json."""
        if self._kind is None:
            self._kind = "vlm" if _is_vlm_config(self._read_model_config()) else "causal"
        return self._kind

    @property
    def capabilities(self) -> frozenset[Capability]:
        if self.kind == "vlm":
            return self.best_capabilities
        return self.best_capabilities - {Capability.IMAGES}

    def identity(self) -> dict[str, Any]:
        config = self.config
        local = Path(config.model).expanduser()
        identity: dict[str, Any] = {
            "type": self.type_name,
            "model": str(local.resolve()) if local.is_dir() else config.model,
            "dtype": self._dtype_name(),
        }
        if config.min_pixels is not None:
            identity["min_pixels"] = config.min_pixels
        if config.max_pixels is not None:
            identity["max_pixels"] = config.max_pixels
        return identity

    def _read_model_config(self) -> dict[str, Any]:
        """The model's config.json as a dict (read once)."""
        if self._model_config is None:
            self._model_config = self._load_model_config()
        return self._model_config

    def _load_model_config(self) -> dict[str, Any]:
        local = Path(self.config.model).expanduser()
        if local.is_dir():
            path = local / "config.json"
            if not path.is_file():
                raise DocrerankError(
                    f"transformers model folder {local} has no config.json; "
                    "point `model` at a folder written by save_pretrained"
                )
            return json.loads(path.read_text())
        transformers = _import_transformers()
        try:
            config = transformers.AutoConfig.from_pretrained(
                self.config.model, trust_remote_code=self.config.trust_remote_code
            )
        except (OSError, ValueError) as exc:
            raise DocrerankError(
                f"cannot read the config of transformers model {self.config.model!r} ({exc}); give a local "
                "model folder, or set `kind: vlm` or `kind: causal` so it is not needed before loading"
            ) from None
        return config.to_dict()

    def _device_name(self) -> str:
        if self.config.device is not None:
            return self.config.device
        return "cuda" if _import_torch().cuda.is_available() else "cpu"

    def _dtype_name(self) -> str:
        if self.config.dtype != "auto":
            return self.config.dtype
        return "float32" if self._device_name().split(":")[0] in ("cpu", "mps") else "bfloat16"

    # -- loading --------------------------------------------------------------------------------------

    @property
    def model(self):
        """The loaded model, in eval mode on its device (loaded on first use)."""
        if self._model is None:
            self._load()
        return self._model

    @property
    def tokenizer(self):
        if self._model is None:
            self._load()
        return self._tokenizer

    @property
    def image_processor(self):
        """A VLM's image processor (``Qwen2VLImageProcessorPil``); None for a text model."""
        if self._model is None:
            self._load()
        return self._image_processor

    def _load(self) -> None:
        transformers = _import_transformers()
        torch = _import_torch()
        config = self.config
        started = time.perf_counter()
        device = torch.device(self._device_name())
        dtype = getattr(torch, self._dtype_name())
        kwargs: dict[str, Any] = {"dtype": dtype, "trust_remote_code": config.trust_remote_code}
        if config.attn_implementation is not None:
            kwargs["attn_implementation"] = config.attn_implementation
        try:
            tokenizer = transformers.AutoTokenizer.from_pretrained(
                config.model, trust_remote_code=config.trust_remote_code
            )
            if self.kind == "vlm":
                model_type = self._read_model_config().get("model_type")
                if model_type not in _QWEN2_VL_FAMILY:
                    raise DocrerankError(
                        f"transformers model {config.model!r} is a {model_type!r} VLM; this backend runs "
                        f"VLMs of the Qwen2-VL family ({', '.join(sorted(_QWEN2_VL_FAMILY))}). Use the vllm "
                        "or openai backend for other VLMs, or `kind: causal` to use it as a text model"
                    )
                from transformers.models.qwen2_vl import Qwen2VLImageProcessorPil

                pixels = {k: v for k, v in (("min_pixels", config.min_pixels), ("max_pixels", config.max_pixels)) if v}
                self._image_processor = Qwen2VLImageProcessorPil.from_pretrained(config.model, **pixels)
                model = transformers.AutoModelForImageTextToText.from_pretrained(config.model, **kwargs)
            else:
                if tokenizer.chat_template is None:
                    raise DocrerankError(
                        f"the tokenizer of {config.model!r} has no chat template; use an instruction-tuned (chat) model"
                    )
                model = transformers.AutoModelForCausalLM.from_pretrained(config.model, **kwargs)
        except OSError as exc:
            raise DocrerankError(
                f"cannot load transformers model {config.model!r} ({exc}); "
                "give a local model folder, or a hub id where a network exists"
            ) from None
        model.to(device)
        model.eval()

        text_config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
        self._max_positions = getattr(text_config, "max_position_embeddings", None)
        eos: list[int] = []
        for source in (model.generation_config.eos_token_id, tokenizer.eos_token_id):
            for token in source if isinstance(source, list) else [source]:
                if token is not None and token not in eos:
                    eos.append(int(token))
        if self.kind == "vlm":
            self._special = {t: tokenizer.convert_tokens_to_ids(t) for t in ("<|im_start|>", "<|im_end|>")}
            self._special.update(
                {t: tokenizer.convert_tokens_to_ids(t) for t in (_IMAGE_TOKEN, _VISION_START, _VISION_END)}
            )
            if self._special[_IMAGE_TOKEN] != model.config.image_token_id:
                raise DocrerankError(
                    f"the tokenizer of {config.model!r} gives {_IMAGE_TOKEN} the id "
                    f"{self._special[_IMAGE_TOKEN]}, but the model expects image_token_id "
                    f"{model.config.image_token_id}"
                )
            if self._special["<|im_end|>"] not in eos:
                eos.append(self._special["<|im_end|>"])
        if not eos:
            raise DocrerankError(f"transformers model {config.model!r} names no end-of-sequence token")
        self._eos_ids = eos
        self._pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos[0]
        self._takes_logits_to_keep = "logits_to_keep" in inspect.signature(model.forward).parameters
        self._device, self._dtype = device, dtype
        self._tokenizer, self._model = tokenizer, model
        log.info(
            "loaded %s (%s, %s on %s) in %.1f s",
            config.model,
            self.kind,
            self._dtype_name(),
            device,
            time.perf_counter() - started,
        )

    # -- prompts --------------------------------------------------------------------------------------

    def prepare(self, chats: Sequence[Sequence[Message]]) -> list[PreparedChat]:
        """Each chat's prompt tokens with the assistant prefix (loading the model first), in order."""
        if self._model is None:  # the tokenizer, the image processor and the special-token ids come with it
            self._load()
        return [self._prepare(index, messages) for index, messages in enumerate(chats)]

    def _prepare(self, index: int, messages: Sequence[Message]) -> PreparedChat:
        """The prompt tokens of one chat with the assistant prefix, or the reason it cannot run."""
        prepared = PreparedChat(index=index)
        try:
            if self.kind == "vlm":
                self._prepare_qwen2_vl(prepared, messages)
            else:
                self._prepare_causal(prepared, messages)
        except Exception as exc:  # an image that does not decode, a template that refuses the chat
            prepared.error = f"cannot prepare the prompt: {type(exc).__name__}: {exc}"
            return prepared
        if self._max_positions is not None and len(prepared.input_ids) > self._max_positions:
            prepared.error = (
                f"the prompt has {len(prepared.input_ids)} tokens, over the {self._max_positions} "
                f"positions of {self.config.model}; shorten the page text or lower max_pixels"
            )
        return prepared

    def _prepare_causal(self, prepared: PreparedChat, messages: Sequence[Message]) -> None:
        tokenizer = self.tokenizer
        chat = [{"role": m.role, "content": m.text} for m in messages]
        text = tokenizer.apply_chat_template(chat, add_generation_prompt=True, tokenize=False)
        prepared.input_ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        prepared.mm_types = [0] * len(prepared.input_ids)

    def _prepare_qwen2_vl(self, prepared: PreparedChat, messages: Sequence[Message]) -> None:
        """Qwen2-VL's ChatML: special tokens as ids, the text between them tokenized as plain text."""
        pieces: list[str | int | ImagePart] = []  # text, a special token id, or an image
        im_start, im_end = self._special["<|im_start|>"], self._special["<|im_end|>"]
        turns = list(messages)
        if not turns or turns[0].role != "system":
            pieces += [im_start, f"system\n{_DEFAULT_SYSTEM}", im_end, "\n"]
        for message in turns:
            pieces += [im_start, f"{message.role}\n"]
            for part in message.parts:
                if isinstance(part, ImagePart):
                    pieces += [self._special[_VISION_START], part, self._special[_VISION_END]]
                else:
                    pieces.append(part.text)
            pieces += [im_end, "\n"]
        pieces += [im_start, "assistant\n"]

        merge = self._image_processor.merge_size
        text = ""
        for piece in [*pieces, None]:
            if isinstance(piece, str):
                text += piece
                continue
            if text:
                ids = self.tokenizer(text, add_special_tokens=False, split_special_tokens=True)["input_ids"]
                prepared.input_ids += ids
                prepared.mm_types += [0] * len(ids)
                text = ""
            if isinstance(piece, int):
                prepared.input_ids.append(piece)
                prepared.mm_types.append(0)
            elif isinstance(piece, ImagePart):
                grid = self._image_grid(piece)
                count = grid[0] * grid[1] * grid[2] // merge**2
                prepared.input_ids += [self._special[_IMAGE_TOKEN]] * count
                prepared.mm_types += [1] * count
                prepared.images.append(piece)
                prepared.grids.append(grid)

    def _image_grid(self, image: ImagePart) -> tuple[int, int, int]:
        """The (t, h, w) patch grid the image processor will give, from the image size alone."""
        from PIL import Image
        from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import smart_resize

        try:
            with Image.open(io.BytesIO(image.data)) as opened:
                width, height = opened.size
        except Exception as exc:  # PIL raises many kinds for bad bytes
            raise ValueError(f"an image does not decode ({type(exc).__name__}: {exc})") from None
        processor = self._image_processor
        patch, merge = processor.patch_size, processor.merge_size
        resized_h, resized_w = smart_resize(
            height,
            width,
            factor=patch * merge,
            min_pixels=processor.size["shortest_edge"],
            max_pixels=processor.size["longest_edge"],
        )
        return (1, resized_h // patch, resized_w // patch)

    # -- batches --------------------------------------------------------------------------------------

    def batches(self, prepared: list[PreparedChat], key: Callable[[PreparedChat], Any] | None = None):
        """The runnable requests by group (``key``), sorted by prompt length, ``batch_size`` at a time."""
        groups: dict[Any, list[PreparedChat]] = {}
        for item in prepared:
            if item.error is None:
                groups.setdefault(key(item) if key else None, []).append(item)
        size = self.config.batch_size
        for members in groups.values():
            members.sort(key=lambda p: len(p.input_ids))
            for start in range(0, len(members), size):
                yield members[start : start + size]

    def model_inputs(self, batch: list[PreparedChat]) -> dict[str, Any]:
        """Left-padded model inputs of a batch, with its images' pixels for a VLM."""
        torch = _import_torch()
        width = max(len(p.input_ids) for p in batch)
        input_ids = torch.full((len(batch), width), self._pad_id, dtype=torch.long)
        attention = torch.zeros((len(batch), width), dtype=torch.long)
        mm_types = torch.zeros((len(batch), width), dtype=torch.long)
        for row, item in enumerate(batch):
            length = len(item.input_ids)
            input_ids[row, width - length :] = torch.tensor(item.input_ids, dtype=torch.long)
            attention[row, width - length :] = 1
            mm_types[row, width - length :] = torch.tensor(item.mm_types, dtype=torch.long)
        inputs: dict[str, Any] = {"input_ids": input_ids, "attention_mask": attention}
        if self.kind == "vlm":
            inputs["mm_token_type_ids"] = mm_types
            images = [image for item in batch for image in item.images]
            if images:
                processed = self._image_processor(images=[image.to_pil() for image in images], return_tensors="pt")
                grids = [tuple(int(v) for v in g) for g in processed["image_grid_thw"]]
                expected = [grid for item in batch for grid in item.grids]
                if grids != expected:
                    raise RuntimeError(f"image grids {grids} differ from the ones the prompt was built for {expected}")
                inputs["pixel_values"] = processed["pixel_values"].to(self._dtype)
                inputs["image_grid_thw"] = processed["image_grid_thw"]
        return {name: tensor.to(self._device) for name, tensor in inputs.items()}

    def last_logits(self, inputs: dict[str, Any], model=None):
        """The logits after the last position of each row of ``model_inputs``, [rows, vocabulary].

        ``model`` is the loaded model (default) or a wrapper of it (LoRA adapters, DDP); gradients flow when
        enabled. Text-only rows get their positions from the mask, so the left padding is not counted.
        """
        model = self.model if model is None else model
        inputs = dict(inputs)
        if "pixel_values" not in inputs:
            inputs["position_ids"] = (inputs["attention_mask"].cumsum(-1) - 1).clamp(min=0)
        if self._takes_logits_to_keep:
            inputs["logits_to_keep"] = 1
        return model(**inputs, use_cache=False).logits[:, -1, :]

    def _run_batches(
        self,
        prepared: list[PreparedChat],
        run: Callable[[list[PreparedChat]], list],
        failed: Callable[[str], Any],
        key: Callable[[PreparedChat], Any] | None = None,
    ) -> dict[int, Any]:
        """``run`` over each batch; a failing batch is retried one request at a time. Results by index."""
        results: dict[int, Any] = {}
        for batch in self.batches(prepared, key):
            try:
                outcome = run(batch)
            except Exception as exc:  # e.g. out of memory: isolate the request that cannot run
                if len(batch) == 1:
                    results[batch[0].index] = failed(f"the model failed on this request: {type(exc).__name__}: {exc}")
                    continue
                log.warning("a batch of %d failed (%s); running its requests one at a time", len(batch), exc)
                for item in batch:
                    results.update(self._run_batches([item], run, failed))
                continue
            for item, result in zip(batch, outcome, strict=True):
                results[item.index] = result
        return results

    # -- next-token log-probabilities -----------------------------------------------------------------

    def next_token_logprobs(
        self, chats: Sequence[Sequence[Message]], token_ids: Sequence[int] | None = None
    ) -> list[NextTokenLogprobs]:
        """Log-probabilities of the next token after each chat's assistant prefix, in order.

        One forward pass per batch; with ``token_ids`` only those columns are kept (e.g. the ids of
        "True" and "False" for a reranker). Thread-safe; call it from sync code.
        """
        with self._lock:
            return self._next_token_logprobs(chats, token_ids)

    def _next_token_logprobs(
        self, chats: Sequence[Sequence[Message]], token_ids: Sequence[int] | None
    ) -> list[NextTokenLogprobs]:
        torch = _import_torch()
        prepared = self.prepare(chats)
        columns = torch.tensor(list(token_ids), dtype=torch.long) if token_ids is not None else None

        def run(batch: list[PreparedChat]) -> list[NextTokenLogprobs]:
            inputs = self.model_inputs(batch)
            with torch.inference_mode():
                logits = self.last_logits(inputs)
                logprobs = torch.log_softmax(logits.float(), dim=-1).cpu()
            if columns is not None:
                logprobs = logprobs[:, columns]
            return [
                NextTokenLogprobs(logprobs=row.clone(), prompt_tokens=len(item.input_ids))
                for row, item in zip(logprobs, batch, strict=True)
            ]

        results = self._run_batches(prepared, run, lambda error: NextTokenLogprobs(error=error))
        return [
            NextTokenLogprobs(error=item.error, prompt_tokens=len(item.input_ids))
            if item.error
            else results[item.index]
            for item in prepared
        ]

    def choice_token_ids(self, choices: Sequence[str]) -> dict[str, list[int]]:
        """Each choice's single-token spellings (case, leading space), distinct between choices."""
        choices = tuple(choices)
        if choices not in self._choice_ids:
            tokenizer = self.tokenizer
            ids: dict[str, list[int]] = {}
            owner: dict[int, str] = {}
            for choice in choices:
                found: list[int] = []
                for spelling in choice_variants(choice):
                    tokens = tokenizer.encode(spelling, add_special_tokens=False)
                    if len(tokens) == 1 and tokens[0] not in found:
                        found.append(tokens[0])
                if not found:  # no single-token spelling: its first token stands for it
                    found = tokenizer.encode(choice, add_special_tokens=False)[:1]
                if not found:
                    raise DocrerankError(f"choice {choice!r} has no tokens; give non-empty choices")
                for token in found:
                    if owner.setdefault(token, choice) != choice:
                        raise DocrerankError(
                            f"choices {owner[token]!r} and {choice!r} start with the same token; "
                            "pick answers that differ in their first token (e.g. yes/no, True/False)"
                        )
                ids[choice] = found
            self._choice_ids[choices] = ids
        return self._choice_ids[choices]

    def _score_sync(self, requests: list[ChoiceRequest]) -> list[ChoiceScores]:
        started = time.perf_counter()
        with self._lock:
            token_ids: list[dict[str, list[int]] | str] = []
            for request in requests:
                try:
                    token_ids.append(self.choice_token_ids(request.choices))
                except DocrerankError as exc:  # choices that share a first token: this request only
                    token_ids.append(str(exc))
            scored = [i for i, ids in enumerate(token_ids) if not isinstance(ids, str)]
            nexts = self._next_token_logprobs([requests[i].messages for i in scored], None)
        results: list[ChoiceScores] = [
            ChoiceScores(error=ids) if isinstance(ids, str) else ChoiceScores() for ids in token_ids
        ]
        for index, found in zip(scored, nexts, strict=True):
            if found.error is not None:
                results[index] = ChoiceScores(error=found.error)
                continue
            ids = token_ids[index]
            choices = requests[index].choices
            results[index] = scores_from_logprobs(
                choices,
                {c: [float(found.logprobs[t]) for t in ids[c]] for c in choices},  # type: ignore[index]
            )
            results[index].usage = Usage(prompt_tokens=found.prompt_tokens)
        latency = time.perf_counter() - started
        for result in results:
            result.latency_s = latency
        return results

    # -- generation -----------------------------------------------------------------------------------

    def _generate_sync(self, requests: list[ChatRequest]) -> list[Generation]:
        torch = _import_torch()
        with self._lock:
            model = self.model
            prepared = self.prepare([request.messages for request in requests])

            def sampling_key(item: PreparedChat) -> tuple:
                sampling = requests[item.index].sampling
                return (sampling.temperature, sampling.top_p, sampling.seed, sampling.stop)

            def run(batch: list[PreparedChat]) -> list[Generation]:
                started = time.perf_counter()
                sampling = requests[batch[0].index].sampling
                limits = [self._token_limit(item, requests[item.index].sampling) for item in batch]
                inputs = self.model_inputs(batch)
                config = self._generation_config(sampling, max(limits))
                if sampling.seed is not None:
                    torch.manual_seed(sampling.seed)
                with torch.inference_mode():
                    output = model.generate(**inputs, generation_config=config, tokenizer=self.tokenizer)
                new_tokens = output[:, inputs["input_ids"].shape[1] :].cpu().tolist()
                latency = time.perf_counter() - started
                return [
                    self._decode(item, tokens, limit, requests[item.index].sampling, latency)
                    for item, tokens, limit in zip(batch, new_tokens, limits, strict=True)
                ]

            results = self._run_batches(prepared, run, lambda error: Generation(error=error), key=sampling_key)
        return [Generation(error=item.error) if item.error else results[item.index] for item in prepared]

    def _token_limit(self, item: PreparedChat, sampling: SamplingParams) -> int:
        """Tokens this request may generate: its max_tokens, within the model's positions."""
        if self._max_positions is None:
            return sampling.max_tokens
        return max(1, min(sampling.max_tokens, self._max_positions - len(item.input_ids)))

    def _generation_config(self, sampling: SamplingParams, max_new_tokens: int):
        transformers = _import_transformers()
        greedy = sampling.temperature == 0
        return transformers.GenerationConfig(
            max_new_tokens=max_new_tokens,
            do_sample=not greedy,
            temperature=None if greedy else sampling.temperature,
            top_p=None if greedy else sampling.top_p,
            top_k=None if greedy else 0,  # no top-k cut: temperature and top_p only, as servers do
            eos_token_id=self._eos_ids,
            pad_token_id=self._pad_id,
            stop_strings=list(sampling.stop) or None,
        )

    def _decode(
        self, item: PreparedChat, tokens: list[int], limit: int, sampling: SamplingParams, latency: float
    ) -> Generation:
        """The text of one row's new tokens: up to its end token, its own limit, or a stop string."""
        tokens = tokens[:limit]
        finish = "length"
        for position, token in enumerate(tokens):
            if token in self._eos_ids:
                tokens, finish = tokens[: position + 1], "stop"
                break
        text = self.tokenizer.decode(tokens, skip_special_tokens=True)
        cuts = [at for at in (text.find(stop) for stop in sampling.stop) if at >= 0]
        if cuts:
            text, finish = text[: min(cuts)], "stop"
        return Generation(
            text=text,
            finish_reason=finish,
            usage=Usage(prompt_tokens=len(item.input_ids), completion_tokens=len(tokens)),
            latency_s=latency,
        )

    # -- the interface --------------------------------------------------------------------------------

    async def _generate(self, requests: list[ChatRequest]) -> list[Generation]:
        return await asyncio.to_thread(self._generate_sync, requests)

    async def _score_choices(self, requests: list[ChoiceRequest]) -> list[ChoiceScores]:
        return await asyncio.to_thread(self._score_sync, requests)

    async def aclose(self) -> None:
        with self._lock:
            if self._model is not None:
                on_gpu = self._device is not None and self._device.type == "cuda"
                self._model = self._tokenizer = self._image_processor = None
                self._choice_ids.clear()
                if on_gpu:
                    _import_torch().cuda.empty_cache()


def _is_vlm_config(config: dict[str, Any]) -> bool:
    """Whether a config.json describes an image-text-to-text model."""
    return config.get("model_type") in _VLM_MODEL_TYPES or "vision_config" in config
