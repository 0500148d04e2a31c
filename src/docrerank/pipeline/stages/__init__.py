"""The pipeline's stages, one module each, and their default order (``DEFAULT_STAGES``).

1. ``positives``            N candidate queries per page (LLM), parsed and filtered for form
2. ``positives_verified``   both verification prompts say yes; ``keep`` per page
3. ``rephrased``            a share of the positives rephrased, verified like a positive
4. ``negative_candidates``  free-form (LLM), property-controlled (LLM) and rule-based negatives, filtered
5. ``negatives_verified``   both prompts say no; evidence check on edited values
6. ``selected``             K negatives per positive; the run's final output (positives, rephrasings, negatives)
"""

from __future__ import annotations

from docrerank.pipeline.stage import Pipeline, Stage
from docrerank.pipeline.stages.negative_candidates import NegativeCandidates
from docrerank.pipeline.stages.negatives_verified import NegativesVerified
from docrerank.pipeline.stages.positives import Positives
from docrerank.pipeline.stages.positives_verified import PositivesVerified
from docrerank.pipeline.stages.rephrased import Rephrased
from docrerank.pipeline.stages.selected import Selected

__all__ = ["DEFAULT_STAGES", "STAGES", "default_pipeline"]

DEFAULT_STAGES: list[Stage] = [
    Positives(),
    PositivesVerified(),
    Rephrased(),
    NegativeCandidates(),
    NegativesVerified(),
    Selected(),
]
STAGES = [stage.name for stage in DEFAULT_STAGES]  # each writes RUN/stages/<name>/ and reads the config's <name>


def default_pipeline() -> Pipeline:
    return Pipeline(DEFAULT_STAGES)
