"""Errors a user can act on.

Every error raised for bad input or bad settings says what went wrong with which item and how to fix it,
so the message alone is enough to act on. They subclass ``ValueError`` because they are about values the
user gave, never about a bug in docrerank.
"""

from __future__ import annotations

import importlib

__all__ = ["DocrerankError", "InputError", "SettingsMismatchError", "import_optional"]


class DocrerankError(ValueError):
    """Base of the errors that docrerank raises on purpose."""


class InputError(DocrerankError):
    """One input item (a file, a page) cannot be used; the rest of the batch goes on.

    Attributes:
        item: what failed, as a user would name it (a path, ``path#page``).
        reason: what is wrong with it.
        fix: what the user can do about it.
    """

    def __init__(self, item: str, reason: str, fix: str):
        self.item = item
        self.reason = reason
        self.fix = fix
        super().__init__(f"{item}: {reason}. Fix: {fix}")


class SettingsMismatchError(DocrerankError):
    """Work already on disk was made with other settings, so reusing it would mix two kinds of output."""


def import_optional(module: str, extra: str):
    """Import an optional dependency, or stop with the install command of the extra that brings it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        package = module.split(".")[0].replace("_", "-")
        raise DocrerankError(
            f'this needs the Python package {package!r}: pip install "docrerank[{extra}]" '
            "(install torch==2.13.0 first for the CPU build where torch is involved)"
        ) from None
