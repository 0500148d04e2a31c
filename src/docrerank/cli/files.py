"""The files a user names on the command line, read so that every way they can be wrong is one line.

A missing or unreadable file, malformed YAML, or a config whose fields do not validate each become a
``DocrerankError`` naming the file (and the line, for YAML) and the fix; ``docrerank`` prints it as one red
line and exits 2 instead of showing a traceback.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape

from docrerank.errors import DocrerankError, InputError
from docrerank.pipeline.config import PipelineConfig

__all__ = ["pipeline_config", "print_skipped", "read_text", "read_yaml", "validation_summary"]


def validation_summary(exc: ValidationError) -> str:
    """A pydantic error as one line: ``field: message; field: message``."""
    return "; ".join(f"{'.'.join(map(str, e['loc'])) or '(top level)'}: {e['msg']}" for e in exc.errors())


def read_text(path: Path, what: str) -> str:
    """The text of ``path`` (``what`` names it for the user: "a pipeline config (YAML)")."""
    path = Path(path)
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DocrerankError(f"{path}: no such file: give the path of {what}") from None
    except IsADirectoryError:
        raise DocrerankError(f"{path} is a folder: give {what}, a file") from None
    except PermissionError:
        raise DocrerankError(f"{path}: permission denied: make it readable (chmod a+r) or give another file") from None
    except UnicodeDecodeError:
        raise DocrerankError(f"{path}: not UTF-8 text: give {what} as a UTF-8 text file") from None
    except OSError as exc:
        raise DocrerankError(f"{path}: cannot be read ({exc.strerror or exc}): check the path and the disk") from None


def read_yaml(path: Path, what: str) -> dict[str, Any]:
    """The mapping a YAML file holds (empty for an empty file); the file's errors are one ``DocrerankError``."""
    text = read_text(path, what)
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        problem = " ".join(str(getattr(exc, "problem", None) or exc).split())
        raise DocrerankError(
            f"{where}: not valid YAML ({problem}): fix the syntax there (indentation, a missing colon or quote)"
        ) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise DocrerankError(f"{path}: {what} holds 'key: value' lines, not a YAML {type(data).__name__}")
    return data


def pipeline_config(path: Path | None) -> PipelineConfig:
    """The pipeline config of ``--config PATH``, or the built-in one when no path is given."""
    if path is None:
        return PipelineConfig()
    read_yaml(path, "a pipeline config (YAML)")  # the file's own errors, named
    try:
        return PipelineConfig.from_yaml(path)
    except ValidationError as exc:
        raise DocrerankError(
            f"{path}: not a valid pipeline config: {validation_summary(exc)}; fix these fields "
            "(the README's 'Generating hard negatives' shows a config)"
        ) from None


def print_skipped(errors: Iterable[InputError], console: Console) -> None:
    """One ``skipped ITEM: reason. Fix: ...`` line each (printed as it is: never read as markup, never wrapped)."""
    for error in errors:
        console.print(f"[yellow]skipped[/yellow] {escape(str(error))}", soft_wrap=True)
