"""The Ray executor: the same stages over a Ray cluster, each shard run by one of a pool of Ray actors (and
``verify``'s page batches and ``label``'s chunks of pairs, the same way).

An actor builds its own ``StageContext`` once (the store, the config and the run directory, read from a path
every node reaches), so an in-process model loads once per actor and an HTTP backend keeps its connections;
it runs ``run_shard``, the function the local executor runs, so the files, markers, fingerprints and resume
are the same, and a run begun under one executor resumes under the other. The driver (``run_pipeline``)
holds the run's lock, plans the shards and writes fingerprints and stats, as it does for the local executor.

An actor that dies (its node lost, its process killed) takes nothing with it: the stages it finished are on
disk, its answered requests in the run's cache. Its shard goes to another actor, which resumes from there
(a new actor only when none is left: a living actor holds its resources, so a new one could wait forever).
Progress is counted on the driver, a shard at a time (a stage at a time for stages with pools of their own:
``ray.stages`` in the config); each stage's cost comes back with its shard.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from docrerank.errors import DocrerankError
from docrerank.evaluation.runner import Chunk, ChunkRunner
from docrerank.pages import Page, PageStore
from docrerank.pipeline.config import PipelineConfig
from docrerank.pipeline.context import StageContext
from docrerank.pipeline.costs import Spending
from docrerank.pipeline.executor import ProgressCallback, ShardCount, ShardOutcome, run_shard
from docrerank.pipeline.pairs import PairInput, VerifiedPair, page_batches, verifier_for, verify_pairs
from docrerank.pipeline.rundir import RunDir
from docrerank.pipeline.stage import Pipeline
from docrerank.pipeline.verify import Expectation
from docrerank.rerankers.base import Reranker

__all__ = [
    "ActorPool",
    "PairJudge",
    "PairScorer",
    "RayExecutor",
    "ShardWorker",
    "score_chunks_on_ray",
    "verify_pairs_on_ray",
]

# a shard whose actor died this many times is not tried again: something kills every actor that takes it
MAX_ATTEMPTS = 3


class ShardWorker:
    """What a Ray actor holds: its own context, built on its node from paths and the config's JSON."""

    def __init__(self, store_root: str, config_json: str, run_root: str, pipeline: Pipeline):
        store = PageStore.open(store_root)
        self.ctx = StageContext(store, PipelineConfig.model_validate_json(config_json), RunDir(run_root))
        self.pipeline = pipeline

    def run(self, shard: str, page_ids: list[str], first: int, last: int, redo: bool) -> ShardOutcome:
        pages = [self.ctx.store.get(pid) for pid in page_ids]
        return run_shard(self.pipeline, self.ctx, shard, pages, first=first, last=last, redo=redo)

    def close(self) -> None:
        self.ctx.close()


@dataclass
class Segment:
    """Consecutive stages that run in one actor call: a stage with a pool of its own (``ray.stages`` in the
    config), or the stages between them, on the executor's pool."""

    pool: str  # a stage's name, or "" for the executor's pool
    first: int
    last: int  # one past the segment's last stage


def segments(names: list[str], own_pools: set[str]) -> list[Segment]:
    """The pipeline's stages cut where a stage has a pool of its own."""
    cut: list[Segment] = []
    for index, name in enumerate(names):
        pool = name if name in own_pools else ""
        if cut and cut[-1].pool == pool == "":
            cut[-1].last = index + 1
        else:
            cut.append(Segment(pool, index, index + 1))
    return cut


@dataclass
class RayExecutor:
    """Shards as Ray actor calls. ``address``: a running cluster (``ray start --head``; None starts or joins
    a local one as ``ray.init`` does); ``workers``: actors (default: the cluster's CPUs / ``num_cpus``, less
    what the stages' own pools hold); ``num_cpus`` / ``num_gpus``: each actor's resources (a GPU per actor for
    in-process models).

    Stages named in the config's ``ray.stages`` get a pool of their own (its ``workers``, ``num_cpus``,
    ``num_gpus``): a shard moves from pool to pool, so one shard's verification runs while the next one's
    generation does, and progress is told per stage as each shard leaves it."""

    address: str | None = None
    workers: int | None = None
    num_cpus: float = 1
    num_gpus: float = 0
    actors_lost: int = 0  # actors that died during the last run (their shards went to others)

    def run(
        self,
        pipeline: Pipeline,
        ctx: StageContext,
        shards: list[tuple[str, list[Page]]],
        on_progress: ProgressCallback | None = None,
        spending: Spending | None = None,
    ) -> list[ShardOutcome]:
        own = ctx.config.ray.stages
        unknown = sorted(set(own) - set(pipeline.names))
        if unknown:
            raise DocrerankError(
                f"ray.stages names {', '.join(unknown)}, not a stage of this pipeline: use {', '.join(pipeline.names)}"
            )
        cut = segments(pipeline.names, set(own))
        pools = self._pools(pipeline, ctx, cut, len(shards))
        progress = ShardCount(pipeline.names, len(shards), on_progress)
        page_ids = {shard: [p.page_id for p in pages] for shard, pages in shards}
        outcomes = {shard: ShardOutcome(shard=shard, pages=len(pages)) for shard, pages in shards}

        def job(shard: str, step: int) -> Job:
            segment, redo = cut[step], not outcomes[shard].resumed
            return Job(segment.pool, shard, (shard, page_ids[shard], segment.first, segment.last, redo), step)

        finished: set[str] = set()

        def done(ended: Job, outcome: ShardOutcome) -> list[Job]:
            merged = outcomes[ended.name]
            merged.resumed &= outcome.resumed
            merged.failed += outcome.failed
            merged.profile |= outcome.profile
            if spending is not None:
                spending.add(outcome.profile)
            segment = cut[ended.step]
            for name in pipeline.names[segment.first : segment.last]:
                progress.advance(name)
            if ended.step + 1 < len(cut):
                return [job(ended.name, ended.step + 1)]
            finished.add(ended.name)
            return []

        def admit(next_job: Job) -> bool:  # a shard begun goes on; a new one only while the budget lasts
            return next_job.step > 0 or spending is None or not spending.exhausted()

        self.actors_lost = dispatch(pools, [job(shard, 0) for shard, _ in shards], done, admit)
        return [outcomes[shard] for shard, _ in shards if shard in finished]

    def _pools(self, pipeline: Pipeline, ctx: StageContext, cut: list[Segment], shards: int) -> dict[str, ActorPool]:
        """A pool per stage with its own (``ray.stages``) and the executor's pool for the rest, each at most one
        actor per shard; refused when the cluster cannot hold them all at once (a pool left waiting for
        resources another pool holds for the whole run would wait forever)."""
        args = (str(ctx.store.root), ctx.config.model_dump_json(), str(ctx.run.root.resolve()), pipeline)
        own = ctx.config.ray.stages
        ray = _connect(self.address)
        total = ray.cluster_resources()
        specs: dict[str, tuple[int, float, float]] = {}
        for segment in cut:
            if segment.pool:
                spec = own[segment.pool]
                specs[segment.pool] = (min(spec.workers, shards), spec.num_cpus, spec.num_gpus)
        if any(not s.pool for s in cut):
            left = total.get("CPU", 1) - sum(w * c for w, c, _ in specs.values())
            workers = self.workers or max(1, int(left // max(self.num_cpus, 0.01)))
            specs[""] = (min(workers, shards), self.num_cpus, self.num_gpus)
        held = {"CPU": sum(w * c for w, c, _ in specs.values()), "GPU": sum(w * g for w, _, g in specs.values())}
        for kind, need in held.items():
            if need > total.get(kind, 0) + 1e-9:
                detail = "; ".join(
                    f"{name or 'the other stages'}: {w} x {c} CPU, {g} GPU" for name, (w, c, g) in specs.items()
                )
                raise DocrerankError(
                    f"the Ray pools need {need:g} {kind} at once and the cluster has {total.get(kind, 0):g} "
                    f"({detail}): give fewer workers or less per actor (ray.stages in the config, --workers, "
                    "--worker-gpus), or a larger cluster"
                )
        return {
            name: ActorPool(ShardWorker, args, self.address, workers, cpus, gpus)
            for name, (workers, cpus, gpus) in specs.items()
        }


@dataclass
class Job:
    """One actor call: the pool that runs it, a name for errors, the arguments of the actor's ``run``, and the
    step of a job that moves from pool to pool."""

    pool: str
    name: str
    args: tuple
    step: int = 0
    attempt: int = 1


class ActorPool:
    """A pool of Ray actors of one class (each built once with ``args``; ``run(*job.args)`` per job)."""

    def __init__(self, cls: type, args: tuple, address: str | None, workers: int | None, cpus: float, gpus: float):
        self.ray = _connect(address)
        self.actor = self.ray.remote(num_cpus=cpus, num_gpus=gpus)(cls)
        self.args = args
        self.workers = workers or int(self.ray.cluster_resources().get("CPU", 1) // max(cpus, 0.01)) or 1
        self.idle: list = []

    def run(self, jobs: list[tuple[str, tuple]], done: Callable[[str, Any], None]) -> int:
        """Every job (a name, the arguments of the actor's ``run``); ``done(name, result)`` as each ends.
        Returns how many actors were lost."""
        return dispatch({"": self}, [Job("", name, args) for name, args in jobs], lambda j, r: done(j.name, r) or [])

    def start(self, jobs: int) -> None:
        self.idle = [self.actor.remote(*self.args) for _ in range(max(1, min(jobs, self.workers)))]


def dispatch(
    pools: dict[str, ActorPool],
    jobs: list[Job],
    done: Callable[[Job, Any], list[Job]],
    admit: Callable[[Job], bool] = lambda job: True,
) -> int:
    """Jobs on their pools' actors; ``done(job, result)`` as each ends returns the jobs that follow from it;
    a job that ``admit`` refuses when its turn comes is left undone (a budget spent).

    An actor that dies takes nothing with it: its job goes to another actor of its pool (a new one only when
    the pool has none left: a living actor holds its resources, so a new one could wait forever), at most
    ``MAX_ATTEMPTS`` times; the job's own files and cache make the retry resume. Returns the actors lost."""
    ray = next(iter(pools.values())).ray
    for pool in pools.values():
        pool.start(len(jobs))
    todo = list(jobs)
    running: dict = {}  # future -> (actor, job)
    lost = 0
    try:
        while todo or running:
            for job in list(todo):
                if pools[job.pool].idle:  # in order, as each pool has an actor free
                    todo.remove(job)
                    if not admit(job):
                        continue
                    worker = pools[job.pool].idle.pop()
                    running[worker.run.remote(*job.args)] = (worker, job)
            if not running:
                break
            finished, _ = ray.wait(list(running), num_returns=1)
            worker, job = running.pop(finished[0])
            pool = pools[job.pool]
            try:
                result = ray.get(finished[0])
            except ray.exceptions.RayActorError as exc:
                lost += 1
                if job.attempt >= MAX_ATTEMPTS:
                    raise DocrerankError(
                        f"{job.name} lost its Ray actor {job.attempt} times (last: {exc}); what was done is kept: "
                        "rerun to resume, with the local executor to see the error"
                    ) from None
                todo.append(replace(job, attempt=job.attempt + 1))
                if not pool.idle and not any(j.pool == job.pool for _, j in running.values()):
                    pool.idle.append(pool.actor.remote(*pool.args))  # the pool's last actor died: a new one
                continue
            pool.idle.append(worker)
            todo.extend(done(job, result))
    finally:
        idle = [worker for pool in pools.values() for worker in pool.idle]
        try:  # each actor's cache checkpointed into its SQLite file; a dead actor's is SQLite's to recover
            ray.get([w.close.remote() for w in idle], timeout=60)
        except ray.exceptions.RayError:
            pass
        for worker in idle + [r[0] for r in running.values()]:
            ray.kill(worker)
    return lost


class PairJudge:
    """What a Ray actor holds to verify given pairs: the store and the verifier (its cache on a shared path)."""

    def __init__(self, store_root: str, config_json: str, expect: Expectation, cache_path: str, evidence_rejects: bool):
        self.store = PageStore.open(store_root)
        self.verifier = verifier_for(PipelineConfig.model_validate_json(config_json), expect, Path(cache_path))
        self.expect = expect
        self.evidence_rejects = evidence_rejects

    def run(self, pairs: list[PairInput]) -> list[VerifiedPair]:
        return verify_pairs(pairs, self.store, self.verifier, self.expect, evidence_rejects=self.evidence_rejects)

    def close(self) -> None:
        self.verifier.backend.close()


def verify_pairs_on_ray(
    pairs: list[PairInput],
    store: PageStore,
    config: PipelineConfig,
    expect: Expectation,
    cache: Path,
    *,
    evidence_rejects: bool = True,
    address: str | None = None,
    workers: int | None = None,
    batch_pages: int = 4,
    on_batch: Callable[[int], Any] | None = None,
) -> list[VerifiedPair]:
    """``verify_pairs`` with its page batches spread over a pool of Ray actors; results in input order, the
    same as on one machine (the cache, on a path every node reaches, makes a rerun resume)."""
    batches = {f"batch {n}": batch for n, batch in enumerate(page_batches(pairs, batch_pages), start=1)}
    results: list[VerifiedPair | None] = [None] * len(pairs)

    def done(name: str, verified: list[VerifiedPair]) -> None:
        for index, result in zip(batches[name], verified, strict=True):
            results[index] = result
        if on_batch is not None:
            on_batch(len(verified))

    args = (str(store.root), config.model_dump_json(), expect, str(Path(cache).resolve()), evidence_rejects)
    jobs = [(name, ([pairs[i] for i in indices],)) for name, indices in batches.items()]
    ActorPool(PairJudge, args, address, workers, 1, 0).run(jobs, done)
    return [r for r in results if r is not None]


class PairScorer:
    """What a Ray actor holds to score pairs: a reranker rebuilt from its settings (an LLM teacher: its backend
    config, the model loaded once per actor)."""

    def __init__(self, document: dict[str, Any]):
        self.reranker = Reranker.from_settings(document, Path.cwd(), "the driver's reranker", allow_remote=True)

    def run(self, pairs: Chunk) -> list[float]:
        return [float(score) for score in self.reranker.score(pairs)]

    def close(self) -> None:
        backend = getattr(self.reranker, "backend", None)
        if backend is not None:
            backend.close()


def score_chunks_on_ray(
    reranker: Reranker, *, address: str | None = None, workers: int | None = None, num_gpus: float = 0
) -> ChunkRunner:
    """``score_pairs``' chunks spread over a pool of Ray actors, each holding the same reranker (``docrerank
    label --executor ray``): the driver writes each chunk's scores into its cache as they come, so a killed
    run resumes as on one machine. The chunks' pages travel with them (text, and images where the reranker
    reads them)."""
    document = {"kind": reranker.kind, **reranker.settings()}

    def run(count: int, chunk: Callable[[int], Chunk], done: Callable[[int, list[float]], None]) -> None:
        jobs = [(str(index), (chunk(index),)) for index in range(count)]
        ActorPool(PairScorer, (document,), address, workers, 1, num_gpus).run(jobs, lambda n, s: done(int(n), s))

    return run


def _connect(address: str | None):
    """Ray, joined to the cluster at ``address`` (or a local one) unless this process already is."""
    ray = _ray()
    if not ray.is_initialized():
        ray.init(address=address, log_to_driver=False, configure_logging=False)
    return ray


def _ray():
    try:
        import ray
    except ImportError:
        raise DocrerankError('the Ray executor needs Ray: pip install "docrerank[ray]"') from None
    return ray
