"""The generation pipeline's config: backends by name, and one section per stage, named as the stage (each can
be switched off).

Loaded from YAML (``PipelineConfig.from_yaml``); unknown keys are errors. Stages name the backend they use,
so generation and verification can run on different models (the paper's choice, to avoid one model's
bias) or on the same one. Sections of earlier versions (``positive_verification``, ``rephrase``,
``negatives_freeform``, ...) are still read, with a warning naming the new one.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from docrerank.backends.llamacpp import LlamaCppConfig
from docrerank.backends.registry import AnyBackendConfig
from docrerank.pipeline.costs import Price
from docrerank.pipeline.filters import FilterSettings
from docrerank.pipeline.properties import Property
from docrerank.pipeline.verify import VerifySettings

__all__ = ["PipelineConfig", "RaySettings", "StageResources"]


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
    candidates: int = Field(
        1,
        ge=1,
        description="rephrasings sampled per chosen positive (other seeds); the one that shares the fewest content "
        "words with the page is verified and kept: in one try the 1.5B keeps most of the page's words",
    )
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


class NegativeCandidates(BaseModel):
    """The negative candidates stage: its three generators, each switched on or off apart."""

    model_config = ConfigDict(extra="forbid")

    freeform: FreeformStage = FreeformStage()
    controlled: ControlledStage = ControlledStage()
    rulebased: RuleBasedStage = RuleBasedStage()


class SelectionStage(_Stage):
    k: int = Field(3, ge=1, description="negatives kept per positive")
    strategy: Literal["random", "most_similar", "hardest"] = "random"


# sections of earlier versions -> their names now (a dot: a subsection)
RENAMED_SECTIONS = {
    "positive_verification": "positives_verified",
    "rephrase": "rephrased",
    "negatives_freeform": "negative_candidates.freeform",
    "negatives_controlled": "negative_candidates.controlled",
    "negatives_rulebased": "negative_candidates.rulebased",
    "negative_verification": "negatives_verified",
    "selection": "selected",
}


def _default_backends() -> dict[str, LlamaCppConfig]:
    model = LlamaCppConfig(model="qwen2.5-coder-1.5b-instruct", n_ctx=4096)
    return {"generator": model, "verifier": model}


class StageResources(BaseModel):
    """A stage's own pool of Ray actors: how many, and what each holds (a GPU for an in-process model; a
    fraction of a CPU for a stage that only waits on an HTTP server)."""

    model_config = ConfigDict(extra="forbid")

    workers: int = Field(1, ge=1, description="actors running this stage, each on one shard at a time")
    num_cpus: float = Field(1, ge=0, description="CPUs each actor holds")
    num_gpus: float = Field(0, ge=0, description="GPUs each actor holds")


class RaySettings(BaseModel):
    """Where stages run under ``--executor ray`` (no part of any fingerprint: it changes no record)."""

    model_config = ConfigDict(extra="forbid")

    stages: dict[str, StageResources] = Field(
        default_factory=dict,
        description="stages with a pool of their own (a shard moves from pool to pool, stages of different shards "
        "run at once); the other stages share the executor's pool (--workers, --worker-gpus)",
    )


class PipelineConfig(BaseModel):
    """Everything that decides a generation run."""

    model_config = ConfigDict(extra="forbid")

    seed: int = 0
    pages_per_shard: int = Field(8, ge=1, description="the unit of resume and of batching")
    max_page_chars: int = Field(4000, ge=200, description="page text given to prompts is cut to this (head)")
    backends: dict[str, AnyBackendConfig] = Field(default_factory=_default_backends)
    positives: PositiveStage = PositiveStage()
    positives_verified: PositiveVerification = PositiveVerification()
    rephrased: RephraseStage = RephraseStage()
    negative_candidates: NegativeCandidates = NegativeCandidates()
    filters: FilterSettings = FilterSettings()
    negatives_verified: NegativeVerification = NegativeVerification()
    selected: SelectionStage = SelectionStage()
    property_sets: dict[str, list[Property]] = Field(default_factory=dict, description="user-defined sets")
    ray: RaySettings = RaySettings()
    prices: dict[str, Price] = Field(
        default_factory=dict, description="by backend name: what its tokens or GPU-hours cost (stats, --budget-money)"
    )

    @model_validator(mode="before")
    @classmethod
    def _renamed_sections(cls, data: Any) -> Any:
        """Read the sections of earlier versions under their new names, saying so (YAML files keep working)."""
        if not isinstance(data, dict) or not any(old in data for old in RENAMED_SECTIONS):
            return data
        data = dict(data)
        for old, new in RENAMED_SECTIONS.items():
            if old not in data:
                continue
            value = data.pop(old)
            if "." in new:
                section, key = new.split(".")
                target = dict(data.get(section) or {})
                if key in target:
                    raise ValueError(f"both {old} and {new} are given: keep {new} only")
                data[section] = target | {key: value}
            elif new in data:
                raise ValueError(f"both {old} and {new} are given: keep {new} only")
            else:
                data[new] = value
            warnings.warn(f"config section {old!r} is now {new!r}: rename it (the old name still works)",
                          FutureWarning, stacklevel=2)  # fmt: skip
        return data

    @model_validator(mode="after")
    def _backends_exist(self) -> PipelineConfig:
        named = {
            "positives": self.positives.backend,
            "positives_verified": self.positives_verified.backend,
            "rephrased": self.rephrased.backend,
            "negative_candidates.freeform": self.negative_candidates.freeform.backend,
            "negative_candidates.controlled": self.negative_candidates.controlled.backend,
            "negatives_verified": self.negatives_verified.backend,
        }
        named |= {f"prices.{name}": name for name in self.prices}
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
