"""Fixtures of the command-line tests: ``docrerank`` run in this process through its real entry point."""

from __future__ import annotations

import sys
from collections.abc import Callable

import pytest

from docrerank.cli.app import main
from tests.helpers import CliResult


@pytest.fixture
def docrerank(monkeypatch, capsys) -> Callable[..., CliResult]:
    """``docrerank(*args)``: ``main()`` as the console script runs it (its exception handling and exit codes
    included, unlike Typer's runner), with stdout and stderr captured."""

    def run(*args) -> CliResult:
        monkeypatch.setattr(sys, "argv", ["docrerank", *map(str, args)])
        capsys.readouterr()
        with pytest.raises(SystemExit) as stopped:
            main()
        out, err = capsys.readouterr()
        code = stopped.value.code
        return CliResult(0 if code is None else code if isinstance(code, int) else 1, out, err)

    return run
