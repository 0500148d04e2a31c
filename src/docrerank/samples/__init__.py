"""The project's sample documents: real PDF manuals from pinned Debian documentation packages.

``corpus.txt`` (beside this file) pins each package by version and the sha256 of its ``.deb``. They are
fetched with ``apt-get download``, checked, unpacked with ``dpkg-deb -x`` into a cache folder, and reused.
Where apt is not available, ``fetch_samples`` raises ``SamplesUnavailableError`` and the demo falls back
to the few real pages committed under ``tests/data/pages``.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from docrerank.errors import DocrerankError

__all__ = [
    "SamplePackage",
    "SamplesUnavailableError",
    "default_cache_dir",
    "fetch_samples",
    "file_sha256",
    "sample_packages",
]


class SamplesUnavailableError(DocrerankError):
    """The sample packages cannot be fetched here (no apt, no network, a changed package)."""


@dataclass(frozen=True)
class SamplePackage:
    """One pinned Debian package of sample documents."""

    name: str
    version: str
    sha256: str
    pdf_pages: int

    @property
    def folder_name(self) -> str:
        return f"{self.name}_{self.version.replace(':', '%3a')}"


def sample_packages() -> list[SamplePackage]:
    """The pinned packages listed in ``corpus.txt``."""
    text = resources.files(__package__).joinpath("corpus.txt").read_text()
    packages = []
    for line in text.splitlines():
        if line.strip() and not line.startswith("#"):
            name, version, sha256, pages = line.split()
            packages.append(SamplePackage(name, version, sha256, int(pages)))
    return packages


def default_cache_dir() -> Path:
    """``$DOCRERANK_CACHE`` or ``~/.cache/docrerank``: where bundles and samples are kept."""
    env = os.environ.get("DOCRERANK_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "docrerank"


def file_sha256(path: Path) -> str:
    """The sha256 of a file, read in blocks (large model and package files)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _download(package: SamplePackage, workdir: Path) -> Path:
    command = ["apt-get", "download", f"{package.name}={package.version}"]
    done = subprocess.run(command, cwd=workdir, capture_output=True, text=True)
    if done.returncode != 0 and os.geteuid() == 0:
        # The package lists may be missing on a fresh machine: refresh them once and retry.
        subprocess.run(["apt-get", "update", "-qq"], capture_output=True, text=True)
        done = subprocess.run(command, cwd=workdir, capture_output=True, text=True)
    if done.returncode != 0:
        raise SamplesUnavailableError(
            f"`{' '.join(command)}` failed: {done.stderr.strip().splitlines()[-1] if done.stderr.strip() else ''}"
            " (run `apt-get update` first; the package must be in the configured Debian release)"
        )
    debs = list(workdir.glob(f"{package.name}_*.deb"))
    if len(debs) != 1:
        raise SamplesUnavailableError(f"apt-get download of {package.name} gave no single .deb file")
    return debs[0]


def fetch_package(package: SamplePackage, cache_dir: Path) -> list[Path]:
    """The PDFs of one package, downloaded, checked and unpacked on first use, then reused."""
    target = cache_dir / "samples" / package.folder_name
    marker = target / ".complete"
    if not marker.exists():
        with tempfile.TemporaryDirectory(dir=cache_dir) as tmp:
            deb = _download(package, Path(tmp))
            actual = file_sha256(deb)
            if actual != package.sha256:
                raise SamplesUnavailableError(
                    f"{deb.name} has sha256 {actual}, but corpus.txt pins {package.sha256}: the archive "
                    "serves another build; do not use it for the project's figures"
                )
            unpacked = Path(tmp) / "root"
            subprocess.run(["dpkg-deb", "-x", str(deb), str(unpacked)], check=True, capture_output=True)
            ready = Path(tmp) / "pdfs"  # filled beside the target, then renamed: a reader sees all or nothing
            ready.mkdir()
            for pdf in sorted(unpacked.rglob("*.pdf")):
                shutil.copy2(pdf, ready / pdf.name)
            (ready / marker.name).touch()
            if target.exists() and not marker.exists():
                shutil.rmtree(target, ignore_errors=True)  # a folder left unfinished by an older version
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.replace(ready, target)
            except OSError:
                if not marker.exists():  # else a concurrent fetch finished first, with the same files
                    raise
    return sorted(target.glob("*.pdf"))


def fetch_samples(cache_dir: Path | None = None, names: list[str] | None = None) -> list[Path]:
    """The sample PDFs (all packages, or those in ``names``), fetched into the cache when missing.

    Raises:
        SamplesUnavailableError: apt-get or dpkg-deb is missing, a download failed, or a checksum differs.
    """
    missing = [tool for tool in ("apt-get", "dpkg-deb") if shutil.which(tool) is None]
    if missing:
        raise SamplesUnavailableError(f"{' and '.join(missing)} not found: the sample packages need Debian's apt")
    cache_dir = cache_dir or default_cache_dir()
    cache_dir.mkdir(parents=True, exist_ok=True)
    packages = [p for p in sample_packages() if names is None or p.name in names]
    unknown = set(names or []) - {p.name for p in packages}
    if unknown:
        raise DocrerankError(f"unknown sample package(s) {sorted(unknown)}: see docrerank/samples/corpus.txt")
    return [pdf for package in packages for pdf in fetch_package(package, cache_dir)]
