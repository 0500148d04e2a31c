"""Input discovery: turn the paths a user gives into checked source documents.

Folders are walked recursively; every file is classified by its content (not only its name) and checked
before any work is scheduled, so a bad file becomes one clear error and never stops the others.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from docrerank.errors import InputError

__all__ = ["IMAGE_SUFFIXES", "PDF_SUFFIXES", "Source", "discover", "display_path"]

PDF_SUFFIXES = frozenset({".pdf"})
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".tif", ".tiff", ".webp"})

_IMAGE_MAGIC = {
    b"\x89PNG\r\n\x1a\n": "PNG",
    b"\xff\xd8\xff": "JPEG",
    b"II*\x00": "TIFF",
    b"MM\x00*": "TIFF",
}


@dataclass(frozen=True)
class Source:
    """A checked input file: a PDF or an image, with its content hash."""

    path: Path
    kind: str  # "pdf" or "image"
    doc_id: str
    size: int


def display_path(path: str | os.PathLike) -> str:
    """A path as printable text, with bytes that are not UTF-8 shown as ``\\xNN`` escapes."""
    return os.fsencode(path).decode("utf-8", errors="backslashreplace")


def _walk(root: Path) -> Iterator[Path]:
    """Every non-directory entry under ``root``, in a stable (sorted) order, symlinks included."""
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            yield Path(dirpath) / name


def _is_supported_name(path: Path) -> bool:
    suffix = path.suffix.lower()
    return suffix in PDF_SUFFIXES or suffix in IMAGE_SUFFIXES


def _file_digest(path: Path) -> tuple[str, bytes, int]:
    """sha256 of the file and its first bytes; reads the file once."""
    digest = hashlib.sha256()
    head = b""
    size = 0
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            if not head:
                head = chunk[:1024]
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), head, size


def check_source(path: Path) -> Source:
    """Check one file and classify it; raise ``InputError`` naming the file and the fix."""
    shown = display_path(path)
    try:
        str(path).encode("utf-8")
    except UnicodeEncodeError:
        raise InputError(
            shown,
            "file name is not valid UTF-8, so it cannot be recorded as the page's source",
            "rename the file to a UTF-8 name (e.g. `convmv -f latin1 -t utf8 --notest FILE`)",
        ) from None
    try:
        info = path.stat()
    except FileNotFoundError:
        raise InputError(shown, "file does not exist (or is a broken symlink)", "check the path") from None
    except OSError as exc:
        raise InputError(shown, f"cannot read file metadata ({exc.strerror})", "check the path") from None
    if not stat.S_ISREG(info.st_mode):
        raise InputError(shown, "not a regular file", "pass PDF or image files, or folders that hold them")
    try:
        sha, head, size = _file_digest(path)
    except PermissionError:
        raise InputError(
            shown, "permission denied when reading the file", f"make it readable (`chmod a+r {shown}`)"
        ) from None
    except OSError as exc:
        raise InputError(shown, f"cannot read the file ({exc.strerror})", "check the file and disk") from None
    if size == 0:
        raise InputError(shown, "file is empty", "re-create or re-download it")

    suffix = path.suffix.lower()
    if suffix in PDF_SUFFIXES:
        if b"%PDF-" not in head:
            found = _sniff(head)
            raise InputError(
                shown,
                f"not a PDF (no %PDF- header; content looks like {found})",
                "rename it with the right extension, or re-create it as a PDF",
            )
        return Source(path=path, kind="pdf", doc_id=sha[:16], size=size)
    if not any(head.startswith(magic) for magic in _IMAGE_MAGIC) and not (
        head[:4] == b"RIFF" and head[8:12] == b"WEBP"
    ):
        raise InputError(
            shown,
            f"not a PNG, JPEG, TIFF or WebP image (content looks like {_sniff(head)})",
            "convert it to one of those formats, or rename it with the right extension",
        )
    return Source(path=path, kind="image", doc_id=sha[:16], size=size)


def _sniff(head: bytes) -> str:
    for magic, name in _IMAGE_MAGIC.items():
        if head.startswith(magic):
            return f"a {name} image"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "a WebP image"
    if head.startswith(b"PK\x03\x04"):
        return "a ZIP archive (e.g. DOCX)"
    if head.startswith(b"%PDF-"):
        return "a PDF"
    try:
        head[:256].decode("utf-8")
        return "text"
    except UnicodeDecodeError:
        return "unknown binary data"


def discover(inputs: Iterable[str | os.PathLike]) -> tuple[list[Source], list[InputError]]:
    """Expand files and folders into checked sources (deduplicated by content) and per-file errors.

    Files named on the command line are always checked (so a mistyped name is reported); inside folders
    only files with a PDF or image extension are taken, the rest are skipped silently as unrelated.
    """
    sources: list[Source] = []
    errors: list[InputError] = []
    seen_docs: set[str] = set()
    for raw in inputs:
        root = Path(os.fsdecode(raw)).absolute()
        if root.is_dir():
            candidates = [p for p in _walk(root) if _is_supported_name(p)]
        elif root.exists() or root.is_symlink():
            candidates = [root]
        else:
            errors.append(InputError(display_path(root), "no such file or folder", "check the path"))
            continue
        for path in candidates:
            if not _is_supported_name(path):
                errors.append(
                    InputError(
                        display_path(path),
                        f"unsupported file type {path.suffix or '(no extension)'!r}",
                        "pass PDF, PNG, JPEG, TIFF or WebP files",
                    )
                )
                continue
            try:
                source = check_source(path)
            except InputError as exc:
                errors.append(exc)
                continue
            if source.doc_id not in seen_docs:
                seen_docs.add(source.doc_id)
                sources.append(source)
    return sources, errors
