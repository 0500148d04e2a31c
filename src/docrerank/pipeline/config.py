"""The generation pipeline's config: backends by name, and one section per stage (each can be switched off).

Loaded from YAML (``PipelineConfig.from_yaml``); unknown keys are errors. Stages name the backend they use,
so generation and verification can run on different models (the paper's choice, to avoid one model's
bias) or on the same one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from docrerank.backends.llamacpp import LlamaCppConfig
from docrerank.backends.registry import AnyBackendConfig
from docrerank.pipeline.filters import FilterSettings
from docrerank.pipeline.properties import Property
from docrerank.pipeline.verify import VerifySettings

__all__ = ["PipelineConfig"]


class _Stage(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool = True


class PositiveStage(_Stage):
    backend: str = "generator"
    n: int = Field(5, ge=1, description="candidate queries per page")
    template: str = "positive_generation"
    use_image: Literal["auto", "always", "never"] = Field(
        "auto", description="auto: the page image when the backend takes images, else the page text"
    )
    temperature: float = 0.7
    max_tokens: int = 768
    given: Path | None = Field(
        None,
        description="a JSONL file of existing positives ({page_id, query, answer?, negatives?} a line; "
        "`docrerank import` writes one from a ColHNQue dataset): used instead of generating them, trusted "
        "without verification, so the run starts at negative generation; given negatives are verified",
    )


class PositiveVerification(VerifySettings):
    enabled: bool = True
    keep: int = Field(1, ge=1, description="verified positives kept per page")
    prefer: Literal["specific", "confident"] = Field(
        "specific",
        description="which verified positives are kept: 'specific' those naming values (numbers, years, versions, "
        "names: up to 2 count), then the most confidently answerable; 'confident' by P(yes) alone. Measured on "
        "the 1.5B: P(yes) alone keeps vague questions ('What is the main purpose of ...?') over specific ones",
    )


class RephraseStage(_Stage):
    backend: str = "generator"
    fraction: float = Field(0.5, ge=0, le=1, description="share of positives rephrased")
    template: str = "rephrase_positive"
    temperature: float = 0.7


class FreeformStage(_Stage):
    backend: str = "generator"
    m: int = Field(12, ge=1, description="variants per positive")
    template: str = "negative_freeform"
    show_page: bool = Field(
        False, description="show the page text too (measured on the 1.5B: it then asks about the page's other facts)"
    )
    temperature: float = 0.8
    max_tokens: int = 1024


class ControlledStage(_Stage):
    backend: str = "generator"
    property_set: str = "general"
    properties: list[str] | None = Field(None, description="a subset of the set's properties; default all")
    per_property: int = Field(2, ge=1)
    template: str = "negative_controlled"
    show_page: bool = False
    temperature: float = 0.8
    max_tokens: int = 768


class RuleBasedStage(_Stage):
    m: int = Field(6, ge=1, description="rule-based edits per positive")


class NegativeVerification(VerifySettings):
    enabled: bool = True
    threshold: float = Field(
        0.36,
        gt=0,
        lt=1,
        description="a negative is accepted when every prompt's P(yes) is below it. Measured on the labeled pairs "
        "(bench/verify.py) with the embedded 1.5B: 0.5 accepts negatives of which 79% are right; 0.36 reaches 0.96 "
        "(0.91 out of fold) at 16% recall. Precision first: a negative the page answers is a wrong training label",
    )
    evidence_rejects: bool = Field(
        True, description="drop an edited negative whose new value the page states next to the query's terms"
    )


class SelectionStage(_Stage):
    k: int = Field(3, ge=1, description="negatives kept per positive")
    strategy: Literal["random", "most_similar", "hardest"] = "random"


def _default_backends() -> dict[str, LlamaCppConfig]:
    model = LlamaCppConfig(model="qwen2.5-coder-1.5b-instruct", n_ctx=4096)
    return {"generator": model, "verifier": model}


class PipelineConfig(BaseModel):
    """Everything that decides a generation run."""

    model_config = ConfigDict(extra="forbid")

    seed: int = 0
    pages_per_shard: int = Field(8, ge=1, description="the unit of resume and of batching")
    max_page_chars: int = Field(4000, ge=200, description="page text given to prompts is cut to this (head)")
    backends: dict[str, AnyBackendConfig] = Field(default_factory=_default_backends)
    positives: PositiveStage = PositiveStage()
    positive_verification: PositiveVerification = PositiveVerification()
    rephrase: RephraseStage = RephraseStage()
    negatives_freeform: FreeformStage = FreeformStage()
    negatives_controlled: ControlledStage = ControlledStage()
    negatives_rulebased: RuleBasedStage = RuleBasedStage()
    filters: FilterSettings = FilterSettings()
    negative_verification: NegativeVerification = NegativeVerification()
    selection: SelectionStage = SelectionStage()
    property_sets: dict[str, list[Property]] = Field(default_factory=dict, description="user-defined sets")

    @model_validator(mode="after")
    def _backends_exist(self) -> PipelineConfig:
        named = {
            "positives": self.positives.backend,
            "positive_verification": self.positive_verification.backend,
            "rephrase": self.rephrase.backend,
            "negatives_freeform": self.negatives_freeform.backend,
            "negatives_controlled": self.negatives_controlled.backend,
            "negative_verification": self.negative_verification.backend,
        }
        missing = {stage: name for stage, name in named.items() if name not in self.backends}
        if missing:
            detail = ", ".join(f"{stage} uses {name!r}" for stage, name in missing.items())
            raise ValueError(f"unknown backend name(s): {detail}; defined: {', '.join(self.backends) or 'none'}")
        return self

    @classmethod
    def from_yaml(cls, path: str | Path) -> PipelineConfig:
        return cls.model_validate(yaml.safe_load(Path(path).read_text()) or {})

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)
