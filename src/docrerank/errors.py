"""Errors a user can act on.

Every error raised for bad input or bad settings says what went wrong with which item and how to fix it,
so the message alone is enough to act on. They subclass ``ValueError`` because they are about values the
user gave, never about a bug in docrerank.
"""

from __future__ import annotations

__all__ = ["DocrerankError", "InputError", "SettingsMismatchError"]


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
