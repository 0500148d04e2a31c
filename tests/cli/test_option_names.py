"""One name for one thing across commands: the first stage's depth is --k, and earlier names still parse."""

from __future__ import annotations

import re

import pytest

from tests.helpers import invoke_cli, run_cli


@pytest.mark.parametrize("command", ["retrieve", "mine", "rerank", "evaluate"])
def test_every_command_takes_the_depth_as_k(command):
    result = invoke_cli(command, "--help")
    assert result.exit_code == 0 and re.search(r"--k\b", result.stdout)


@pytest.mark.parametrize(("command", "old"), [("mine", "--top-n"), ("rerank", "--depth")])
def test_the_earlier_name_of_the_depth_still_parses(command, old, tmp_path):
    # a value below the minimum fails on the option itself, before any file is read: the name was understood
    result = run_cli(command, old, "0", "--pages", tmp_path, "--queries", tmp_path / "q.jsonl", "--out", tmp_path)
    assert result.exit_code == 2 and f"Invalid value for '--k' / '{old}'" in " ".join(result.stderr.split())
