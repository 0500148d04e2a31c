"""What a request gets instead of scores: ``Rejected`` refuses the whole request (what the client can fix: malformed
input, a limit, a URL this server does not fetch), ``Unscorable`` fails one document, which is ranked last and
named in ``meta.warnings`` while the others are scored."""

from __future__ import annotations

from docrerank.server.settings import ServerSettings

__all__ = ["Rejected", "Unscorable", "check_image_size", "check_limit"]


class Rejected(Exception):
    """A request the server will not score: answered ``status`` with ``{"detail": detail}``."""

    def __init__(self, status: int, detail: str, headers: dict[str, str] | None = None):
        self.status, self.detail, self.headers = status, detail, headers
        super().__init__(detail)


class Unscorable(Exception):
    """A document that cannot be scored: a per-item result, ranked last and named in ``meta.warnings``."""


def check_limit(value: int, limit: int, setting: str, what: str, status: int = 413) -> None:
    if value > limit:
        raise Rejected(status, f"{what} is {value}, over the limit of {limit} ({setting})")


def check_image_size(size: int, where: str, settings: ServerSettings) -> None:
    """``check_limit`` for an image's bytes (declared, read so far, or decoded) against ``max_image_bytes``."""
    check_limit(size, settings.max_image_bytes, "max_image_bytes", f"{where}: the image's size in bytes")
