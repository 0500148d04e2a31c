"""The environment `make demo` builds holds every extra that runs on a CPU, so the README's commands after the
demo (serve, evaluate, evaluate-verifier's plot, retrieve) find their packages; `evaluate` does not need the
training extra."""

from __future__ import annotations

import re

import pytest

from tests.helpers import ROOT

tomllib = pytest.importorskip("tomllib")  # Python >= 3.11

GPU_OR_TRAINING = {"colpali", "gpu", "train"}  # not in the demo: GPU packages, and the trainers


def _demo_extras() -> set[str]:
    (extras,) = re.findall(r"^DEMO_EXTRAS := (\S+)$", (ROOT / "Makefile").read_text(), re.MULTILINE)
    assert '-e ".[$(DEMO_EXTRAS)]"' in (ROOT / "Makefile").read_text()
    return set(extras.split(","))


def test_the_demo_installs_every_extra_a_cpu_command_asks_for():
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    demo = _demo_extras()
    assert demo <= set(declared)
    asked = {
        extra
        for path in (ROOT / "src" / "docrerank").rglob("*.py")
        for extra in re.findall(r"import_optional\(\s*\"[\w.]+\",\s*\"(\w+)\"\)", path.read_text())
    }
    assert {"serve", "report", "eval", "retrieval", "data", "embed"} <= asked
    assert asked - GPU_OR_TRAINING <= demo


def test_evaluate_metrics_come_from_a_small_extra_that_train_includes():
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert any(req.startswith("ir-measures") for req in declared["eval"])
    assert any("eval" in req for req in declared["train"] if req.startswith("docrerank["))
    metrics = (ROOT / "src" / "docrerank" / "evaluation" / "metrics.py").read_text()
    assert 'import_optional("ir_measures", "eval")' in metrics
