"""What the command-line tests share."""

from __future__ import annotations

from tests.helpers import CliResult


def error_line(result: CliResult) -> str:
    """The one line that reports the error: exactly one on stderr, and no traceback."""
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith(("error:", "internal error"))]
    assert len(lines) == 1, result.stderr
    return lines[0]
