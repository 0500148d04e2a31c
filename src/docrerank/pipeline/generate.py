"""The DocReRank pipeline run: stages over shards of pages, in a run directory that is also the cache.

Stages, in order (each one's output is the next one's input, shard by shard):

1. ``positives``            N candidate queries per page (LLM), parsed and filtered for form
2. ``positives_verified``   both verification prompts say yes; ``keep`` per page
3. ``rephrased``            a share of the positives rephrased, verified like a positive
4. ``negative_candidates``  free-form (LLM), property-controlled (LLM) and rule-based negatives, filtered
5. ``negatives_verified``   both prompts say no; evidence check on edited values
6. ``selected``             K negatives per positive; the run's final output (positives, rephrasings, negatives)

A shard goes through every stage before the next shard starts, so results appear early and a killed run
loses at most one shard's stage. Requests go through the run's response cache: a resumed run re-asks
nothing that was answered, and the same seed gives the same output. Shards are bound to their pages (see
rundir.py), and a request that got no answer is a rejection marked ``failed``: a rerun asks it again and
redoes the stages after it for that shard.
"""

from __future__ import annotations

import json
import random
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import BaseModel
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from docrerank.backends import Backend, Capability, ResponseCache, load_backend
from docrerank.errors import DocrerankError
from docrerank.pages import Page, PageStore
from docrerank.pipeline import requests as stage_prompts
from docrerank.pipeline.config import PipelineConfig
from docrerank.pipeline.filters import apply_filters, check_positive
from docrerank.pipeline.properties import get_property_set
from docrerank.pipeline.records import STAGES, QueryRecord, Rejection, query_id
from docrerank.pipeline.rulebased import EntityPool, find_spans, rule_based_negatives
from docrerank.pipeline.rundir import RunDir, fingerprint
from docrerank.pipeline.selection import select_negatives
from docrerank.pipeline.stats import run_stats
from docrerank.pipeline.verify import Verifier
from docrerank.prompts import OutputError, parse_output

__all__ = ["STAGES", "RunReport", "plan_shards", "run_pipeline"]


@dataclass
class RunReport:
    run_dir: Path
    shards: int = 0
    shards_resumed: int = 0
    failed: int = 0  # items whose requests got no answer (see stats.json); a rerun retries them
    skipped: list[str] = field(default_factory=list)  # selected pages without text, left out
    elapsed_s: float = 0.0
    profile: dict[str, dict[str, float]] = field(default_factory=dict)  # stage -> what it cost in this run
    pages_run: int = 0  # pages of shards that ran a stage in this run (not all resumed): the profile's denominator


_COUNTERS = ("requests_sent", "cache_hits", "prompt_tokens", "completion_tokens", "busy_s")


def _counters(backends: dict[str, Backend]) -> dict[str, float]:
    unique = {id(b): b for b in backends.values()}.values()  # names may share one backend
    return {name: sum(getattr(b.stats, name) for b in unique) for name in _COUNTERS}


class _Context:
    """What every stage needs: the store, the config, the backends, the verifier(s), seeds."""

    def __init__(self, store: PageStore, config: PipelineConfig, run: RunDir):
        self.store = store
        self.config = config
        self.run = run
        self.cache = ResponseCache(run.cache_path)
        self.backends: dict[str, Backend] = {}
        built: dict[str, Backend] = {}  # names with the same config share one backend (one model in memory)
        for name, backend_config in config.backends.items():
            key = backend_config.model_dump_json()
            self.backends[name] = built.setdefault(key, load_backend(backend_config, cache=self.cache))
        self.positive_verifier = Verifier(
            self.backends[config.positive_verification.backend], config.positive_verification, config.max_page_chars
        )
        self.negative_verifier = Verifier(
            self.backends[config.negative_verification.backend], config.negative_verification, config.max_page_chars
        )
        self._pool: EntityPool | None = None
        self.given = GivenQueries({}, {}, [])
        if config.positives.given is not None:
            self.given = read_given_positives(config.positives.given, store)

    @property
    def pool(self) -> EntityPool:
        """The store's entity pool (built on first use, kept beside the store)."""
        if self._pool is None:
            self._pool = EntityPool.for_store(self.store)
        return self._pool

    def rng(self, stage: str, key: str) -> random.Random:
        return random.Random(f"{self.config.seed}:{stage}:{key}")

    def page_text(self, page: Page) -> str:
        return page.text[: self.config.max_page_chars]


def _parse(model: type[BaseModel], generation, page_id: str, stage: str) -> tuple[BaseModel | None, Rejection | None]:
    """The structured output of one generation, or a rejection that keeps the reason and the raw text."""
    try:
        return parse_output(model, generation), None
    except OutputError as exc:
        failed = not generation.answered or None  # no answer at all: retried by a rerun
        return None, Rejection(stage=stage, reason=exc.reason, page_id=page_id, raw=exc.raw or None, failed=failed)


def _judged(stage: str, judgement, record: QueryRecord, reason: str | None = None) -> Rejection:
    """The rejection of a query the verifier did not accept (or could not judge: ``failed``)."""
    return Rejection(stage=stage, reason=reason or judgement.reason, record=record, failed=judgement.failed or None)


@dataclass
class GivenQueries:
    """Existing positives by page, their existing negatives by positive, and the lines that were unusable."""

    positives: dict[str, list[QueryRecord]]
    negatives: dict[str, list[str]]
    rejected: list[Rejection]


# a given query longer than this is not a question (and would overflow a small model's context)
MAX_GIVEN_QUERY_CHARS = 2000


def _given_line_problem(item: object) -> str | None:
    """Why a line of given positives is not ``{page_id: str, query: str, answer?: str, negatives?: [str]}``."""
    if not isinstance(item, dict):
        return "not a JSON object with page_id, query (and negatives as a list of strings)"
    for key in ("page_id", "query"):
        if not isinstance(item.get(key), str):
            got = "missing" if key not in item else f"a {type(item[key]).__name__}"
            return f"{key} must be a string ({got}): write it as a JSON string"
    if not isinstance(item.get("answer") or "", (str, int, float)):
        return "answer must be a string"
    negatives = item.get("negatives") or []
    if not isinstance(negatives, list) or not all(isinstance(q, str) for q in negatives):
        return "negatives must be a list of strings"
    text = item["query"].strip()
    if not text:
        return "empty query"
    if not any(ch.isalnum() for ch in text):
        return "the query has no letter or digit: write it as text"
    if len(text) > MAX_GIVEN_QUERY_CHARS:
        return f"the query has {len(text)} characters, more than {MAX_GIVEN_QUERY_CHARS}: give a question"
    return None


def read_given_positives(path: Path, store: PageStore) -> GivenQueries:
    """Existing positives from a JSONL file (``{page_id, query, answer?, negatives?}`` a line).

    ``negatives`` (a list of query texts, e.g. a ColHNQue row's negative queries) join the positive's
    negative candidates and are filtered and verified like the generated ones (generator ``given``). A line
    that is not of that shape, names a page the store lacks or a page without text (the verifier reads page
    text) is rejected with its line number and the fix; the other lines go on.
    """
    by_page: dict[str, list[QueryRecord]] = defaultdict(list)
    negatives: dict[str, list[str]] = {}
    rejected: list[Rejection] = []
    for number, line in enumerate(Path(path).read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError:
            item = None
        problem = _given_line_problem(item)
        if problem:
            page_id = item.get("page_id") if isinstance(item, dict) and isinstance(item.get("page_id"), str) else None
            rejected.append(Rejection(stage="positives", reason=f"{path}:{number}: {problem}", page_id=page_id))
            continue
        page_id, text = item["page_id"], item["query"].strip()
        given_negatives = [q.strip() for q in item.get("negatives") or [] if q.strip()]
        if page_id not in store:
            reason = f"{path}:{number}: page {page_id!r} is not in the store; ingest its document first"
            rejected.append(Rejection(stage="positives", reason=reason, page_id=page_id))
        elif not store.get(page_id).text.strip():
            reason = f"{path}:{number}: page {page_id} has no text; ingest its document with OCR (--ocr auto)"
            rejected.append(Rejection(stage="positives", reason=reason, page_id=page_id))
        else:
            record = QueryRecord(
                query_id=query_id(page_id, "positive", text),
                page_id=page_id,
                kind="positive",
                text=text,
                answer=(str(item.get("answer") or "").strip() or None),
                generator="given",
            )
            by_page[page_id].append(record)
            negatives.setdefault(record.query_id, []).extend(given_negatives)
    return GivenQueries(by_page, negatives, rejected)


def _stage_positives(ctx: _Context, pages: list[Page], upstream: list[QueryRecord]):
    settings = ctx.config.positives
    if settings.given is not None:
        return [r for page in pages for r in ctx.given.positives[page.page_id]], []
    backend = ctx.backends[settings.backend]
    use_image = settings.use_image == "always" or (
        settings.use_image == "auto" and Capability.IMAGES in backend.capabilities
    )
    requests = [stage_prompts.positive_request_for(ctx, page, use_image) for page in pages]
    kept, rejected = [], []
    for page, generation in zip(pages, backend.generate(requests), strict=True):
        parsed, rejection = _parse(stage_prompts.PositiveQueries, generation, page.page_id, "positives")
        if rejection:
            rejected.append(rejection)
            continue
        for item in parsed.queries:
            record = QueryRecord(
                query_id=query_id(page.page_id, "positive", item.query),
                page_id=page.page_id,
                kind="positive",
                text=item.query.strip(),
                answer=item.answer.strip() or None,
                generator="llm:positive",
            )
            decision = check_positive(record.text, page.text, ctx.config.filters, record.answer)
            if not decision.keep:
                rejected.append(Rejection(stage="positives", reason=f"filter {decision.reason}", record=record))
            else:
                kept.append(record)
    return kept, rejected


def rank_positives(records: list[QueryRecord], page_text: str, pool: EntityPool, prefer: str) -> list[QueryRecord]:
    """A page's verified positives, best first: with ``prefer="specific"`` those naming more values a
    negative can change (numbers, years, versions, names; up to 2 count), then by the lower of the prompts'
    P(yes); with ``"confident"`` by P(yes) alone."""

    def key(record: QueryRecord) -> tuple:
        values = len(find_spans(record.text, page_text, pool)) if prefer == "specific" else 0
        return (-min(values, 2), -min(record.verdict.p_yes), record.query_id)

    return sorted(records, key=key)


def _stage_positives_verified(ctx: _Context, pages: list[Page], upstream: list[QueryRecord]):
    if ctx.config.positives.given is not None:  # given positives are trusted: the run starts at negatives
        return list(upstream), []
    by_page = {page.page_id: page for page in pages}
    judgements = ctx.positive_verifier.judge([(by_page[r.page_id], r) for r in upstream], "answerable")
    kept, rejected = [], []
    candidates = defaultdict(list)
    for record, judgement in zip(upstream, judgements, strict=True):
        record = record.model_copy(update={"verdict": judgement.verdict})
        if judgement.accepted:
            candidates[record.page_id].append(record)
        else:
            rejected.append(_judged("positives_verified", judgement, record))
    keep = ctx.config.positive_verification.keep
    prefer = ctx.config.positive_verification.prefer
    for records in candidates.values():
        ranked = rank_positives(records, by_page[records[0].page_id].text, ctx.pool, prefer)
        kept += ranked[:keep]
        rejected += [
            Rejection(stage="positives_verified", reason=f"not among the {keep} kept", record=r) for r in ranked[keep:]
        ]
    return kept, rejected


def _stage_rephrased(ctx: _Context, pages: list[Page], upstream: list[QueryRecord]):
    settings = ctx.config.rephrase
    chosen = [r for r in upstream if ctx.rng("rephrase", r.query_id).random() < settings.fraction]
    by_page = {page.page_id: page for page in pages}
    backend = ctx.backends[settings.backend]
    generations = backend.generate([stage_prompts.rephrase_request_for(ctx, by_page[r.page_id], r) for r in chosen])
    candidates, rejected = [], []
    for positive, generation in zip(chosen, generations, strict=True):
        parsed, rejection = _parse(stage_prompts.Rephrasing, generation, positive.page_id, "rephrased")
        if rejection:
            rejected.append(rejection)
            continue
        text = parsed.query.strip()
        record = QueryRecord(
            query_id=query_id(positive.page_id, "rephrased", text, positive.query_id),
            page_id=positive.page_id,
            kind="rephrased",
            text=text,
            answer=positive.answer,
            parent_id=positive.query_id,
            generator="llm:rephrase",
        )
        # the pipeline's filters, as for negatives: a rephrasing that is the positive again, or no question, goes
        survivors, dropped = apply_filters(positive, [record], ctx.config.filters)
        candidates += survivors
        rejected += [r.model_copy(update={"stage": "rephrased", "reason": f"filter {r.reason}"}) for r in dropped]
    judgements = ctx.positive_verifier.judge([(by_page[r.page_id], r) for r in candidates], "answerable")
    kept = list(upstream)  # the positives go on; rephrasings are added next to them
    for record, judgement in zip(candidates, judgements, strict=True):
        record = record.model_copy(update={"verdict": judgement.verdict})
        if judgement.accepted:
            kept.append(record)
        else:
            rejected.append(_judged("rephrased", judgement, record, f"rephrasing {judgement.reason}"))
    return kept, rejected


def _llm_negatives(ctx: _Context, pages: dict[str, Page], positives: list[QueryRecord]):
    """Free-form and property-controlled negatives, one batch per kind."""
    candidates: dict[str, list[QueryRecord]] = defaultdict(list)
    rejected: list[Rejection] = []
    config = ctx.config
    jobs: list[tuple[str, QueryRecord, str | None]] = []
    requests = []
    if config.negatives_freeform.enabled:
        for positive in positives:
            jobs.append(("freeform", positive, None))
            requests.append(stage_prompts.freeform_request(ctx, pages[positive.page_id], positive))
    if config.negatives_controlled.enabled:
        property_set = get_property_set(config.negatives_controlled.property_set, config.property_sets)
        wanted = config.negatives_controlled.properties
        for spec in property_set.properties:
            if wanted is not None and spec.name not in wanted:
                continue
            for positive in positives:
                if not spec.applies_to(positive.text):
                    reason = f"controlled: not asked, the positive has no {spec.name} to change (applies_when)"
                    rejected.append(Rejection(stage="negative_candidates", reason=reason, page_id=positive.page_id))
                    continue
                jobs.append(("controlled", positive, spec.name))
                requests.append(stage_prompts.controlled_request(ctx, pages[positive.page_id], positive, spec))
    by_backend: dict[str, list[int]] = defaultdict(list)
    for index, (kind, _, _) in enumerate(jobs):
        name = config.negatives_freeform.backend if kind == "freeform" else config.negatives_controlled.backend
        by_backend[name].append(index)
    generations: list = [None] * len(jobs)
    for name, indices in by_backend.items():
        for index, generation in zip(indices, ctx.backends[name].generate([requests[i] for i in indices]), strict=True):
            generations[index] = generation
    for (kind, positive, prop), generation in zip(jobs, generations, strict=True):
        model = stage_prompts.NegativeQueries if kind == "freeform" else stage_prompts.ControlledNegatives
        parsed, rejection = _parse(model, generation, positive.page_id, "negative_candidates")
        if rejection:
            rejected.append(rejection)
            continue
        for item in parsed.queries:
            text = item.query.strip()
            extra = {}
            if kind == "controlled":
                extra = {"property": prop, "changed_from": item.old_value or None, "changed_to": item.new_value or None}
            record = QueryRecord.negative_of(positive, text, f"llm:{kind}", **extra)
            problem = _controlled_edit_problem(positive, record) if kind == "controlled" else None
            if problem:
                rejected.append(Rejection(stage="negative_candidates", reason=problem, record=record))
            else:
                candidates[positive.query_id].append(record)
    return candidates, rejected


def _controlled_edit_problem(positive: QueryRecord, record: QueryRecord) -> str | None:
    """Why a controlled edit is not the one-property change it claims to be, or None."""
    old, new = (record.changed_from or "").strip().lower(), (record.changed_to or "").strip().lower()
    if not old or not new:
        return "controlled edit: no old or new value given"
    if old == new:
        return "controlled edit: the new value equals the old one"
    if old not in positive.text.lower():
        return "controlled edit: the old value is not in the positive query"
    if new not in record.text.lower():
        return "controlled edit: the new value is not in the edited query"
    return None


def _stage_negative_candidates(ctx: _Context, pages: list[Page], upstream: list[QueryRecord]):
    config = ctx.config
    by_page = {page.page_id: page for page in pages}
    positives = [r for r in upstream if r.kind == "positive"]
    candidates, rejected = _llm_negatives(ctx, by_page, positives)
    for positive in positives:
        for text in ctx.given.negatives.get(positive.query_id, []):
            candidates[positive.query_id].append(QueryRecord.negative_of(positive, text, "given"))
    if config.negatives_rulebased.enabled:
        for positive in positives:
            rng = ctx.rng("rule", positive.query_id)
            page = by_page[positive.page_id]
            candidates[positive.query_id] += rule_based_negatives(
                positive, page.text, ctx.pool, config.negatives_rulebased.m, rng, document=page.doc_id
            )
    kept = [r for r in upstream]  # positives and rephrasings pass through
    for positive in positives:
        survivors, dropped = apply_filters(positive, candidates.get(positive.query_id, []), config.filters)
        kept += survivors
        rejected += [
            r.model_copy(update={"stage": "negative_candidates", "reason": f"filter {r.reason}"}) for r in dropped
        ]
    return kept, rejected


def _stage_negatives_verified(ctx: _Context, pages: list[Page], upstream: list[QueryRecord]):
    by_page = {page.page_id: page for page in pages}
    negatives = [r for r in upstream if r.kind == "negative"]
    kept = [r for r in upstream if r.kind != "negative"]
    rejected = []
    judgements = ctx.negative_verifier.judge(
        [(by_page[r.page_id], r) for r in negatives],
        "unanswerable",
        evidence_rejects=ctx.config.negative_verification.evidence_rejects,
    )
    for record, judgement in zip(negatives, judgements, strict=True):
        record = record.model_copy(update={"verdict": judgement.verdict, "evidence": judgement.evidence})
        if judgement.accepted:
            kept.append(record)
        else:
            rejected.append(_judged("negatives_verified", judgement, record))
    return kept, rejected


def _stage_selected(ctx: _Context, pages: list[Page], upstream: list[QueryRecord]):
    settings = ctx.config.selection
    negatives = defaultdict(list)
    for record in upstream:
        if record.kind == "negative":
            negatives[record.parent_id].append(record)
    kept = [r for r in upstream if r.kind != "negative"]
    rejected = []
    for record in kept:
        if record.kind != "positive":
            continue
        chosen, dropped = select_negatives(
            record,
            negatives.get(record.query_id, []),
            settings.k,
            settings.strategy,
            ctx.rng("select", record.query_id),
        )
        kept += chosen
        rejected += [
            Rejection(stage="selected", reason=f"not among the {settings.k} selected", record=r) for r in dropped
        ]
    return kept, rejected


def _passthrough(ctx: _Context, pages: list[Page], upstream: list[QueryRecord]):
    return list(upstream), []


_RUNNERS: dict[str, Callable] = {
    "positives": _stage_positives,
    "positives_verified": _stage_positives_verified,
    "rephrased": _stage_rephrased,
    "negative_candidates": _stage_negative_candidates,
    "negatives_verified": _stage_negatives_verified,
    "selected": _stage_selected,
}


def _enabled(config: PipelineConfig, stage: str) -> bool:
    return {
        "positives": config.positives.enabled,
        "positives_verified": config.positive_verification.enabled,
        "rephrased": config.rephrase.enabled,
        "negative_candidates": config.negatives_freeform.enabled
        or config.negatives_controlled.enabled
        or config.negatives_rulebased.enabled
        or config.positives.given is not None,  # given positives may bring their negatives
        "negatives_verified": config.negative_verification.enabled,
        "selected": config.selection.enabled,
    }[stage]


def _fingerprints(ctx: _Context) -> dict[str, str]:
    """Each stage's fingerprint: its settings, prompts and backends, chained to the one before."""
    config = ctx.config
    parts = stage_prompts.stage_fingerprint_parts(ctx)
    # not pages_per_shard: shards are bound to their pages, and how pages are grouped changes no record
    upstream = fingerprint(config.seed, config.max_page_chars)
    result = {}
    for stage in STAGES:
        upstream = fingerprint(upstream, _enabled(config, stage), parts[stage])
        result[stage] = upstream
    return result


def plan_shards(run: RunDir, store: PageStore, pages: list[Page], per_shard: int) -> list[tuple[str, list[Page]]]:
    """The shards that cover ``pages``: the run directory's own shards for pages it already holds (each whole),
    then new shards of ``per_shard`` pages for the rest, in the order of ``pages``.

    Raises:
        DocrerankError: a shard of the run directory holds a page that is not in the store.
    """
    known = run.shard_pages()
    owner = {page_id: shard for shard, page_ids in known.items() for page_id in page_ids}
    planned: dict[str, list[Page]] = {}
    new: dict[str, Page] = {}  # pages no shard holds yet, by id, in order
    for page in pages:
        shard = owner.get(page.page_id)
        if shard is None:
            new.setdefault(page.page_id, page)
        elif shard not in planned:
            missing = [pid for pid in known[shard] if pid not in store]
            if missing:
                raise DocrerankError(
                    f"the run directory {run.root} has a shard ({shard}) with page {missing[0]}, which the store "
                    f"{store.root} lacks: pass the page store the run was made with (--pages), or use a new --run-dir"
                )
            planned[shard] = [store.get(pid) for pid in known[shard]]
    unplanned = list(new.values())
    for start in range(0, len(unplanned), per_shard):
        chunk = unplanned[start : start + per_shard]
        planned[run.add_shard([p.page_id for p in chunk])] = chunk
    return list(planned.items())


def run_pipeline(
    store: PageStore,
    config: PipelineConfig,
    run_dir: str | Path,
    force: bool = False,
    show_progress: bool = True,
    page_ids: list[str] | None = None,
) -> RunReport:
    """Run (or resume) the pipeline over the store's pages (or ``page_ids``) into ``run_dir``.

    Raises:
        DocrerankError: ``page_ids`` is empty (an empty selection is never the whole store), the run
            directory is written by another process, was made with other settings, or in an older layout.
    """
    if page_ids is not None and not page_ids:
        raise DocrerankError("no page was selected: choose at least one page (check --sample / --max-pages)")
    run = RunDir(run_dir)
    with run.writing():
        return _run(store, config, run, force, show_progress, page_ids)


def _run(store, config, run: RunDir, force, show_progress, page_ids) -> RunReport:
    started = time.perf_counter()
    run.check_layout(force)
    ctx = _Context(store, config, run)
    run.check_fingerprints(_fingerprints(ctx), STAGES, force)
    (run.root / "config.yaml").write_text(config.to_yaml())
    report = RunReport(run_dir=run.root)
    if page_ids is None and config.positives.given is not None:
        page_ids = [pid for pid in store.page_ids if pid in ctx.given.positives]
        run.write_json("given_positives_rejected.json", [r.model_dump(exclude_none=True) for r in ctx.given.rejected])
    pages = [store.get(pid) for pid in page_ids] if page_ids is not None else list(store)
    report.skipped = [p.page_id for p in pages if not p.text.strip()]  # the verifier reads page text
    pages = [p for p in pages if p.text.strip()]
    if not pages:
        raise DocrerankError(
            f"no page to run on: no selected page of the store {store.root} has text; ingest with OCR (--ocr auto)"
        )
    shards = plan_shards(run, store, pages, config.pages_per_shard)
    report.shards = len(shards)
    progress = Progress(
        TextColumn("{task.description:<20}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        disable=not show_progress,
    )
    try:
        _run_shards(ctx, shards, progress, report)
    finally:
        for backend in ctx.backends.values():
            backend.close()
        # closing checkpoints SQLite's write-ahead log into cache.sqlite: the file alone holds every answer
        # (copied, archived or opened read-only), with no cache.sqlite-wal beside it
        ctx.cache.close()
    report.elapsed_s = time.perf_counter() - started
    run.write_json("stats.json", run_stats(run, ctx.backends, report.elapsed_s, report.profile, report.pages_run))
    return report


def _run_shards(ctx: _Context, shards: list[tuple[str, list[Page]]], progress: Progress, report: RunReport) -> None:
    run, config = ctx.run, ctx.config
    with progress:
        tasks = {stage: progress.add_task(stage, total=len(shards)) for stage in STAGES}
        for shard, shard_pages in shards:
            upstream: list[QueryRecord] = []
            resumed = True
            for stage in STAGES:
                # a stage is redone when unfinished, when it had failures, or when a stage before it was redone
                if resumed and run.is_done(stage, shard) and not run.failed(stage, shard):
                    upstream = run.read_shard(stage, shard, QueryRecord)
                else:
                    resumed = False
                    runner = _RUNNERS[stage] if _enabled(config, stage) else _passthrough
                    before, started = _counters(ctx.backends), time.perf_counter()
                    kept, rejected = runner(ctx, shard_pages, upstream)
                    _add_cost(report, stage, before, _counters(ctx.backends), time.perf_counter() - started)
                    failed = sum(bool(r.failed) for r in rejected)
                    run.write_shard(stage, shard, kept, rejected, failed=failed)
                    report.failed += failed
                    upstream = kept
                progress.advance(tasks[stage])
            report.shards_resumed += resumed
            if not resumed:
                report.pages_run += len(shard_pages)


def _add_cost(report: RunReport, stage: str, before: dict, after: dict, seconds: float) -> None:
    """Add one stage's run on one shard to the run's profile: where the time and the tokens went."""
    cost = report.profile.setdefault(stage, dict.fromkeys(("seconds", *_COUNTERS), 0.0))
    cost["seconds"] += seconds
    for name in _COUNTERS:
        cost[name] += after[name] - before[name]
