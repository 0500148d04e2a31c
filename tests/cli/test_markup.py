"""Text from pages, models and users is printed as it is: Rich never reads it as markup (which would eat
``[serve]`` in an install hint, or ``[9]`` in a rejection reason)."""

from __future__ import annotations

from docrerank.cli.stats import print_stats
from docrerank.pipeline.stages import STAGES


def test_run_stats_print_reasons_and_property_names_as_they_are(capsys):
    stage = {"kept": 0, "kept_by_kind": {}, "rejected": 1, "rejection_reasons": {"'[9]' x": 1}, "pass_rate": 0.0}
    stats = {
        "stages": {name: dict(stage) for name in STAGES},
        "verifier_agreement": {},
        "negatives_by_property": {"p[bold]": {"made": 1, "yield": 0.0}},
    }
    print_stats(stats)
    printed = capsys.readouterr().out
    assert "1× '[9]' x" in printed and "p[bold]" in printed
