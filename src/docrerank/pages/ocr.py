"""OCR with the Tesseract command-line program.

Tesseract runs as one subprocess per page with ``OMP_THREAD_LIMIT=1``: its own OpenMP threads fight with
the process pool for the cores and make it ~5x slower, while one thread per process scales with the pool.
"""

from __future__ import annotations

import functools
import io
import os
import shutil
import subprocess

from PIL import Image

from docrerank.errors import DocrerankError

__all__ = ["OcrUnavailableError", "check_tesseract", "ocr_image", "tesseract_version"]

INSTALL_HINT = (
    "install Tesseract (Debian/Ubuntu: `apt-get install tesseract-ocr tesseract-ocr-eng`; "
    "macOS: `brew install tesseract`), or pass `--ocr never` to use the PDF text layer only"
)


class OcrUnavailableError(DocrerankError):
    """Tesseract (or one of the requested languages) is not installed."""


@functools.cache
def _available_languages(binary: str) -> frozenset[str]:
    out = subprocess.run([binary, "--list-langs"], capture_output=True, text=True, timeout=30)
    lines = (out.stdout + out.stderr).splitlines()
    return frozenset(line.strip() for line in lines[1:] if line.strip() and " " not in line.strip())


def check_tesseract(lang: str) -> str:
    """The path of the tesseract binary, after checking that it runs and has ``lang``; else a clear error."""
    binary = shutil.which("tesseract")
    if binary is None:
        raise OcrUnavailableError(f"OCR needs the `tesseract` program, which is not on PATH: {INSTALL_HINT}")
    missing = [code for code in lang.split("+") if code not in _available_languages(binary)]
    if missing:
        raise OcrUnavailableError(
            f"Tesseract has no data for language(s) {', '.join(missing)}: install them "
            f"(Debian: `apt-get install {' '.join('tesseract-ocr-' + code for code in missing)}`) "
            "or choose another --ocr-lang"
        )
    return binary


@functools.cache
def tesseract_version() -> str | None:
    """Tesseract's version line, for the store manifest; None when it is not installed."""
    binary = shutil.which("tesseract")
    if binary is None:
        return None
    out = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=30)
    first = (out.stdout or out.stderr).splitlines()
    return first[0].strip() if first else None


def ocr_image(image: Image.Image, lang: str = "eng", timeout_s: float = 120.0) -> str:
    """The text Tesseract reads on ``image`` (page segmentation: automatic)."""
    binary = check_tesseract(lang)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=1)  # a pipe, not storage: encode fast
    env = {**os.environ, "OMP_THREAD_LIMIT": "1"}
    try:
        done = subprocess.run(
            [binary, "stdin", "stdout", "-l", lang, "--psm", "3"],
            input=buffer.getvalue(),
            capture_output=True,
            timeout=timeout_s,
            env=env,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise TimeoutError(f"Tesseract took more than {timeout_s:.0f} s") from None
    if done.returncode != 0:
        message = done.stderr.decode("utf-8", "replace").strip().splitlines()
        raise RuntimeError(f"Tesseract failed: {message[-1] if message else 'exit ' + str(done.returncode)}")
    return done.stdout.decode("utf-8", "replace")
