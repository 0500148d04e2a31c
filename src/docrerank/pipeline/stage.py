"""A stage of the pipeline, and the pipeline as a list of stages.

A ``Stage`` is one class: its name (its folder under ``RUN/stages/`` and its section of the config), the
backend capabilities it needs (checked when the pipeline is built, before any request), the kinds of records
it reads and adds, its fingerprint, and ``run``, which turns one shard's pages and the records of the stage
before into the records it keeps and the ones it rejects. A stage does not know which executor runs it, or
where: it reads and writes nothing but what ``run`` takes and returns.

Adding a stage is writing one subclass and putting it in the list (``stages/__init__.py``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel

from docrerank.backends import Capability
from docrerank.errors import DocrerankError
from docrerank.pages import Page
from docrerank.pipeline.records import QueryKind, QueryRecord, Rejection
from docrerank.pipeline.rundir import fingerprint
from docrerank.prompts import OutputError, parse_output

if TYPE_CHECKING:
    from docrerank.pipeline.config import PipelineConfig
    from docrerank.pipeline.context import StageContext

__all__ = ["Pipeline", "Stage", "StageResult", "judged", "parse_generation"]

StageResult = tuple[list[QueryRecord], list[Rejection]]


class Stage(ABC):
    """One step of the pipeline over a shard of pages."""

    name: ClassVar[str]  # RUN/stages/<name>/ and the config's section <name>
    reads: ClassVar[frozenset[QueryKind]] = frozenset()  # kinds of records it needs from the stages before
    adds: ClassVar[frozenset[QueryKind]] = frozenset()  # kinds of records it makes
    verifies: ClassVar[QueryKind | None] = None  # the kind it judges with the verifier (for stats' agreement)

    def settings(self, config: PipelineConfig) -> BaseModel:
        return getattr(config, self.name)

    def enabled(self, config: PipelineConfig) -> bool:
        return self.settings(config).enabled

    def needs(self, config: PipelineConfig) -> dict[str, set[Capability]]:
        """The capabilities it needs of each backend (by the config's name), when enabled."""
        return {}

    @abstractmethod
    def fingerprint_parts(self, ctx: StageContext) -> Any:
        """What decides its output besides its input: settings, prompt templates, backends' identities."""

    @abstractmethod
    def run(self, ctx: StageContext, pages: list[Page], upstream: list[QueryRecord]) -> StageResult:
        """The records kept and rejected for one shard's ``pages``, given the stage before's kept records."""


class Pipeline:
    """Stages in order; each one's kept records are the next one's input, shard by shard."""

    def __init__(self, stages: list[Stage]):
        names = [stage.name for stage in stages]
        if len(set(names)) != len(names):
            raise DocrerankError(f"a pipeline names each stage once: {', '.join(names)}")
        made: set[str] = set()
        for stage in stages:
            missing = stage.reads - made
            if missing:
                raise DocrerankError(
                    f"stage {stage.name} reads {', '.join(sorted(missing))} records, which no stage before it makes"
                )
            made |= stage.adds
        self.stages = stages

    @property
    def names(self) -> list[str]:
        return [stage.name for stage in self.stages]

    def check(self, ctx: StageContext) -> None:
        """Every enabled stage's backends have what it needs (a ``CapabilityError`` naming the stage, else)."""
        for stage in self.stages:
            if stage.enabled(ctx.config):
                for backend, needed in stage.needs(ctx.config).items():
                    if needed:
                        ctx.backends[backend].require(*sorted(needed), stage=stage.name)

    def fingerprints(self, ctx: StageContext) -> dict[str, str]:
        """Each stage's fingerprint: its settings, prompts and backends, chained to the one before."""
        config = ctx.config
        # not pages_per_shard: shards are bound to their pages, and how pages are grouped changes no record
        upstream = fingerprint(config.seed, config.max_page_chars)
        result = {}
        for stage in self.stages:
            upstream = fingerprint(upstream, stage.enabled(config), stage.fingerprint_parts(ctx))
            result[stage.name] = upstream
        return result

    def run_stage(self, stage: Stage, ctx: StageContext, pages: list[Page], upstream: list[QueryRecord]) -> StageResult:
        """The stage's output, or its input passed through when it is switched off."""
        if not stage.enabled(ctx.config):
            return list(upstream), []
        return stage.run(ctx, pages, upstream)


def parse_generation(model: type[BaseModel], generation, page_id: str, stage: str):
    """The structured output of one generation, or a rejection that keeps the reason and the raw text."""
    try:
        return parse_output(model, generation), None
    except OutputError as exc:
        failed = not generation.answered or None  # no answer at all: retried by a rerun
        return None, Rejection(stage=stage, reason=exc.reason, page_id=page_id, raw=exc.raw or None, failed=failed)


def judged(stage: str, judgement, record: QueryRecord, reason: str | None = None) -> Rejection:
    """The rejection of a query the verifier did not accept (or could not judge: ``failed``)."""
    return Rejection(stage=stage, reason=reason or judgement.reason, record=record, failed=judgement.failed or None)
