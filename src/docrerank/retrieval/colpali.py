"""ColPali-family retrieval over page images (colpali-engine): ColQwen2, ColQwen2.5, ColQwen3, ColPali, ColSmol.

These models read the page image itself, so pages without a text layer or OCR are found too, and figures
and tables count. A page is many vectors (one per image patch and prompt token, 128 dimensions, unit
length) and a query is one per token; a page scores by late interaction (MaxSim): each query token's best
dot product with the page's tokens, summed over the query's tokens.

The index folder holds ``embeddings.npy`` (every page's token vectors, float16, one page after another),
``offsets.npy`` (where each page's rows start, and the end) and ``page_ids.json``. Padding never enters
it: only tokens the model attended to are kept, so a page's vectors (and its score) do not depend on the
pages it was batched with. It is built in parts of ``PART_PAGES`` pages saved as they finish, so an
interrupted build resumes where it stopped. Search is exact: every page is scored.

torchvision is not needed. colpali-engine imports one helper from transformers' torchvision-based Qwen2-VL
image processor module and transformers' processors insist on a video processor (which needs torchvision)
for the Qwen families; without torchvision, the PIL image processor stands in for both, as the
transformers backend does. That matters because the only torchvision wheels on PyPI are built for CUDA
torch and do not load with the CPU one.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from docrerank.errors import DocrerankError, import_optional
from docrerank.pages import PageStore
from docrerank.retrieval.base import Retriever
from docrerank.retrieval.runs import Ranking

__all__ = ["DEFAULT_COLPALI", "ColPaliRetriever", "late_interaction", "load_colpali", "model_classes"]

DEFAULT_COLPALI = "vidore/colqwen2-v1.0"
PART_PAGES = 64  # pages per saved part of an index build
SCORE_BLOCK_FLOATS = 2**26  # query token x page token similarities held at once (256 MiB of float32)

# Model and processor classes by the model's name (lowercased), most specific first: the first whose key
# the name contains wins. A local folder with another name is recognised by its config's model_type.
_BY_NAME = (
    ("colqwen3.5", ("ColQwen3_5", "ColQwen3_5Processor")),
    ("colqwen3_5", ("ColQwen3_5", "ColQwen3_5Processor")),
    ("colqwen3", ("ColQwen3", "ColQwen3Processor")),
    ("colqwen2.5", ("ColQwen2_5", "ColQwen2_5_Processor")),
    ("colqwen2_5", ("ColQwen2_5", "ColQwen2_5_Processor")),
    ("colqwen2", ("ColQwen2", "ColQwen2Processor")),
    ("colsmol", ("ColIdefics3", "ColIdefics3Processor")),
    ("colidefics3", ("ColIdefics3", "ColIdefics3Processor")),
    ("colmodernvbert", ("ColModernVBert", "ColModernVBertProcessor")),
    ("colgemma3", ("ColGemma3", "ColGemmaProcessor3")),
    ("colpali", ("ColPali", "ColPaliProcessor")),
)
_BY_MODEL_TYPE = {
    "qwen3_5": ("ColQwen3_5", "ColQwen3_5Processor"),
    "qwen3_vl": ("ColQwen3", "ColQwen3Processor"),
    "qwen2_5_vl": ("ColQwen2_5", "ColQwen2_5_Processor"),
    "qwen2_vl": ("ColQwen2", "ColQwen2Processor"),
    "idefics3": ("ColIdefics3", "ColIdefics3Processor"),
    "modernvbert": ("ColModernVBert", "ColModernVBertProcessor"),
    "gemma3": ("ColGemma3", "ColGemmaProcessor3"),
    "paligemma": ("ColPali", "ColPaliProcessor"),
}
_TORCHVISION_MODULE = "transformers.models.qwen2_vl.image_processing_qwen2_vl"
_PIL_MODULE = "transformers.models.qwen2_vl.image_processing_pil_qwen2_vl"


def model_classes(model: str) -> tuple[str, str]:
    """The colpali-engine (model, processor) class names for a model name or local folder."""
    lowered = model.lower()
    for key, classes in _BY_NAME:
        if key in lowered:
            return classes
    config = Path(model) / "config.json"
    if config.is_file():
        model_type = json.loads(config.read_text()).get("model_type", "")
        if model_type in _BY_MODEL_TYPE:
            return _BY_MODEL_TYPE[model_type]
    known = ", ".join(key for key, _ in _BY_NAME)
    raise DocrerankError(
        f"cannot tell which ColPali model {model!r} is: name one whose name contains one of {known}, or a local "
        f"folder whose config.json has a model_type of {', '.join(_BY_MODEL_TYPE)}"
    )


@cache
def _has_torchvision() -> bool:
    """Whether torchvision is installed; an error where it is installed but does not load, since transformers
    then fails on every vision model with a message that names neither torchvision nor the fix."""
    if importlib.util.find_spec("torchvision") is None:
        return False
    try:
        importlib.import_module("torchvision")
    except Exception as exc:  # RuntimeError or OSError from its compiled operators
        raise DocrerankError(
            f"torchvision is installed but does not load with this torch ({type(exc).__name__}: {exc}); the "
            "torchvision wheels on PyPI are built for CUDA torch. With the CPU torch, uninstall torchvision "
            "(pip uninstall torchvision): the ColPali retriever does not need it"
        ) from None
    return True


@contextmanager
def _pil_stands_in_for_torchvision() -> Iterator[None]:
    """While colpali-engine is imported: transformers' PIL Qwen2-VL image module answers for the
    torchvision-based one (colpali-engine takes only ``smart_resize`` from it, the same function in both).
    The alias is removed afterwards, so nothing else sees it."""
    if _has_torchvision() or _TORCHVISION_MODULE in sys.modules:
        yield
        return
    sys.modules[_TORCHVISION_MODULE] = importlib.import_module(_PIL_MODULE)
    try:
        yield
    finally:
        sys.modules.pop(_TORCHVISION_MODULE, None)


def _torch_dtype(name: str):
    import torch

    dtype = getattr(torch, name, None)
    if not isinstance(dtype, torch.dtype):
        raise DocrerankError(f"dtype must name a torch dtype (bfloat16, float16, float32), not {name!r}")
    return dtype


def _engine():
    """``colpali_engine.models``, or the install hint of the ``colpali`` extra."""
    with _pil_stands_in_for_torchvision():
        return import_optional("colpali_engine.models", "colpali")


def _without_video(processor_class: type) -> type:
    """``processor_class`` without its video processor: transformers checks each of a processor's parts
    against its class, and the video processor's class needs torchvision, which page images never use."""

    class ImageOnly(processor_class):
        def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
            super().__init__(
                image_processor=image_processor, tokenizer=tokenizer, chat_template=chat_template, **kwargs
            )

    ImageOnly.__name__ = ImageOnly.__qualname__ = f"{processor_class.__name__}ImageOnly"
    return ImageOnly


def load_colpali(model: str = DEFAULT_COLPALI, device: str | None = None, dtype: str | None = None):
    """The colpali-engine ``(model, processor)`` for a Hub name or local folder, in eval mode on ``device``
    (default: cuda when there is one, else cpu) in ``dtype`` (default: bfloat16 on cuda, float32 on cpu)."""
    import torch

    engine = _engine()
    model_name, processor_name = model_classes(model)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    dtype = dtype or ("bfloat16" if device.startswith("cuda") else "float32")
    processor_class = getattr(engine, processor_name)
    if "video_processor" in processor_class.get_attributes() and not _has_torchvision():
        processor_class = _without_video(processor_class)
    try:
        processor = processor_class.from_pretrained(model)
        network = getattr(engine, model_name).from_pretrained(model, dtype=_torch_dtype(dtype))
    except OSError as exc:
        raise DocrerankError(
            f"cannot load the ColPali model {model!r} ({exc}): give a local path or a Hub name"
        ) from None
    return network.to(device).eval(), processor


def late_interaction(queries: Sequence[Any], pages: Sequence[Any], device: str | None = None):
    """MaxSim scores, a ``(queries, pages)`` float32 tensor on the CPU: for each query token its best dot
    product with the page's tokens, summed over the query's tokens. Each query and page is a ``(tokens,
    dim)`` tensor of real tokens only. Exact, and padding never counts (a padded page token is -inf, a padded
    query token is zero), so a page's score does not depend on the pages scored beside it. Work goes in
    blocks of at most ``SCORE_BLOCK_FLOATS`` similarities."""
    import torch
    from torch.nn.utils.rnn import pad_sequence

    scores = torch.zeros(len(queries), len(pages), dtype=torch.float32)
    if not len(queries) or not len(pages):
        return scores
    query_len, page_len = max(len(q) for q in queries), max(len(p) for p in pages)
    query_block = max(1, min(len(queries), SCORE_BLOCK_FLOATS // (query_len * page_len)))
    page_block = max(1, SCORE_BLOCK_FLOATS // (query_block * query_len * page_len))
    for q_start in range(0, len(queries), query_block):
        chunk = [q.to(device=device, dtype=torch.float32) for q in queries[q_start : q_start + query_block]]
        q = pad_sequence(chunk, batch_first=True)  # (queries, query tokens, dim)
        for p_start in range(0, len(pages), page_block):
            part = [p.to(device=device, dtype=torch.float32) for p in pages[p_start : p_start + page_block]]
            lengths = torch.tensor([len(p) for p in part], device=q.device)
            p = pad_sequence(part, batch_first=True)  # (pages, page tokens, dim)
            padding = torch.arange(p.shape[1], device=q.device)[None, :] >= lengths[:, None]
            similarity = torch.einsum("aid,bjd->aibj", q, p).masked_fill_(padding[None, None], float("-inf"))
            block = similarity.amax(dim=3).sum(dim=1)  # (queries, pages)
            scores[q_start : q_start + len(chunk), p_start : p_start + len(part)] = block.cpu()
    return scores


class ColPaliRetriever(Retriever):
    """Late-interaction retrieval over page images with a ColPali-family model.

    ``model`` names the weights (a Hub name or local folder; the model class comes from the name, see
    ``model_classes``). ``model_object`` and ``processor_object`` give an already loaded colpali-engine model
    and processor instead (``model`` must still name them: it is part of the index fingerprint).
    ``batch_size`` pages (or queries) go through the model at once. ``progress`` is called with (pages
    embedded, pages in all) while the index is built.
    """

    name = "colpali"

    def __init__(
        self,
        store: PageStore,
        model: str = DEFAULT_COLPALI,
        device: str | None = None,
        batch_size: int = 4,
        dtype: str | None = None,
        progress: Callable[[int, int], Any] | None = None,
        model_object=None,
        processor_object=None,
    ):
        super().__init__(store)
        if batch_size < 1:
            raise DocrerankError(f"batch_size must be at least 1, not {batch_size}")
        if (model_object is None) != (processor_object is None):
            raise DocrerankError("give both model_object and processor_object, or neither")
        _engine()  # a missing install fails here, not at the first search
        import torch

        self.model, self.batch_size, self.progress = model, batch_size, progress
        if model_object is not None:
            parameter = next(model_object.parameters())
            self.device = device or str(parameter.device)
            self.dtype = str(parameter.dtype).removeprefix("torch.")
            self._classes = (type(model_object).__name__, type(processor_object).__name__)
        else:
            self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
            self.dtype = dtype or ("bfloat16" if self.device.startswith("cuda") else "float32")
            _torch_dtype(self.dtype)
            self._classes = model_classes(model)
        self._network, self._processor = model_object, processor_object
        self._pages: list[Any] | None = None  # one (tokens, dim) tensor per page, views of one array
        self._page_ids: list[str] = []

    def _loaded(self):
        if self._network is None:
            self._network, self._processor = load_colpali(self.model, self.device, self.dtype)
        return self._network, self._processor

    def settings(self) -> dict[str, Any]:
        image = self._loaded()[1].image_processor
        image_settings = {
            k: v for k, v in image.to_dict().items() if k not in ("image_processor_type", "processor_class")
        }
        return {
            "model": self.model,
            "class": self._classes[0],
            "dtype": self.dtype,
            "image_processor": type(image).__name__,  # PIL and torchvision resizing differ slightly
            "image": json.loads(json.dumps(image_settings, default=str)),
            "tokens": "attended only",
            "scoring": "maxsim",
        }

    def _embed(self, batch) -> list[Any]:
        """The model's vectors for one processed batch (float32, on the CPU), the attended tokens of each item
        only: padded positions are zero vectors at best, and 0/0 = NaN where the projection has no bias."""
        import torch

        network = self._loaded()[0]
        with torch.inference_mode():
            vectors = network(**batch.to(network.device))
        keep = batch["attention_mask"].bool().to(vectors.device)
        return [row[mask].float().cpu() for row, mask in zip(vectors, keep, strict=True)]

    def _embed_queries(self, queries: Sequence[str]) -> list[Any]:
        processor = self._loaded()[1]
        vectors = []
        for start in range(0, len(queries), self.batch_size):
            vectors.extend(self._embed(processor.process_queries(list(queries[start : start + self.batch_size]))))
        return vectors

    def _load(self) -> None:
        if self._pages is not None:
            return
        import torch

        folder = self.index_dir
        if not (folder / "page_ids.json").exists():
            self._build()
        tokens = torch.from_numpy(np.load(folder / "embeddings.npy")).to(self.device)
        offsets = np.load(folder / "offsets.npy")
        self._pages = list(torch.split(tokens, np.diff(offsets).tolist()))
        self._page_ids = json.loads((folder / "page_ids.json").read_text())

    def _build(self) -> None:
        """Embed every page image, a part at a time; parts already in the ``.tmp`` folder are kept (resume)."""
        pages = list(self.store)
        tmp = self.building_dir()
        tokens, lengths = [], []
        for part, start in enumerate(range(0, len(pages), PART_PAGES)):
            path = tmp / f"part-{part:05d}.npz"
            end = min(start + PART_PAGES, len(pages))
            if not path.exists():
                vectors = []
                for begin in range(start, end, self.batch_size):
                    images = [self.store.image(page) for page in pages[begin : min(begin + self.batch_size, end)]]
                    vectors.extend(v.numpy() for v in self._embed(self._loaded()[1].process_images(images)))
                    if self.progress is not None:
                        self.progress(min(begin + self.batch_size, end), len(pages))
                with open(tmp / "part.partial.npz", "wb") as handle:
                    lengths_of_part = np.asarray([len(v) for v in vectors], dtype=np.int64)
                    np.savez(handle, tokens=np.concatenate(vectors).astype(np.float16), lengths=lengths_of_part)
                (tmp / "part.partial.npz").replace(path)
            elif self.progress is not None:  # a part saved before an interruption
                self.progress(end, len(pages))
            with np.load(path) as saved:
                tokens.append(saved["tokens"])
                lengths.append(saved["lengths"])
        all_tokens = np.concatenate(tokens) if tokens else np.zeros((0, 1), dtype=np.float16)
        all_lengths = np.concatenate(lengths) if lengths else np.zeros(0, dtype=np.int64)
        np.save(tmp / "embeddings.npy", all_tokens)
        np.save(tmp / "offsets.npy", np.concatenate([[0], np.cumsum(all_lengths)]).astype(np.int64))
        self.publish_index(tmp, [p.page_id for p in pages])

    def search(self, queries: Sequence[str], k: int) -> list[Ranking]:
        import torch

        if not queries:
            return []
        self._load()
        if not self._page_ids or k < 1:
            return [[] for _ in queries]
        scores = late_interaction(self._embed_queries(queries), self._pages, self.device)
        top_scores, top_ids = torch.topk(scores, min(k, len(self._page_ids)), dim=1)
        return [
            [(self._page_ids[i], float(s)) for i, s in zip(ids.tolist(), values.tolist(), strict=True)]
            for ids, values in zip(top_ids, top_scores, strict=True)
        ]

    def score(self, queries: Sequence[str], page_ids: Sequence[str]) -> list[float]:
        if len(queries) != len(page_ids):
            raise ValueError(f"{len(queries)} queries but {len(page_ids)} page ids: give one page per query")
        if not queries:
            return []
        self._load()
        position = {page_id: i for i, page_id in enumerate(self._page_ids)}
        scores = []
        for vector, page_id in zip(self._embed_queries(queries), page_ids, strict=True):
            page = position.get(page_id)
            scores.append(0.0 if page is None else float(late_interaction([vector], [self._pages[page]], self.device)))
        return scores
