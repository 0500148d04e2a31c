"""One name for one thing across commands: the first stage's depth is --k, a TREC run file --trec, a generation
run directory --run-dir; the page store is one option; earlier names still parse."""

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


@pytest.mark.parametrize(
    ("command", "new", "old"),
    [
        ("mine", "--trec", "--run"),
        ("rerank", "--trec", "--run"),
        ("mix", "--run-dir", "--run"),
        ("report", "--run-dir", "--run"),
        ("evaluate", "--report-run-dir", "--report-run"),
    ],
)
def test_a_run_file_is_trec_and_a_run_directory_run_dir_and_the_old_name_parses(command, new, old):
    # typer lists an option's names together: "--trec,--run <path>"
    help_text = " ".join(invoke_cli(command, "--help").stdout.split())
    assert re.search(rf"{new},\s*{old}\b", help_text), help_text


@pytest.mark.parametrize(
    "command", ["export", "generate", "mine", "mix", "rerank", "retrieve", "verify", "label", "train"]
)
def test_the_page_store_is_one_option_with_one_help(command):
    help_text = " ".join(invoke_cli(command, "--help").stdout.replace("│", " ").split())
    assert "--pages" in help_text and ("whose pages the inputs name" in help_text or "rows name pages" in help_text)
