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
Progress is counted on the driver, a shard at a time; each stage's cost comes back with its shard.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from docrerank.errors import DocrerankError
from docrerank.evaluation.runner import Chunk, ChunkRunner
from docrerank.pages import Page, PageStore
from docrerank.pipeline.config import PipelineConfig
from docrerank.pipeline.context import StageContext
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

    def run(self, shard: str, page_ids: list[str]) -> ShardOutcome:
        return run_shard(self.pipeline, self.ctx, shard, [self.ctx.store.get(pid) for pid in page_ids])

    def close(self) -> None:
        self.ctx.close()


@dataclass
class RayExecutor:
    """Shards as Ray actor calls. ``address``: a running cluster (``ray start --head``; None starts or joins
    a local one as ``ray.init`` does); ``workers``: actors (default: the cluster's CPUs / ``num_cpus``);
    ``num_cpus`` / ``num_gpus``: each actor's resources (a GPU per actor for in-process models)."""

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
    ) -> list[ShardOutcome]:
        progress = ShardCount(pipeline.names, len(shards), on_progress)
        outcomes: dict[str, ShardOutcome] = {}

        def done(shard: str, outcome: ShardOutcome) -> None:
            outcomes[shard] = outcome
            for name in pipeline.names:
                progress.advance(name)

        args = (str(ctx.store.root), ctx.config.model_dump_json(), str(ctx.run.root.resolve()), pipeline)
        jobs = [(shard, (shard, [p.page_id for p in pages])) for shard, pages in shards]
        pool = ActorPool(ShardWorker, args, self.address, self.workers, self.num_cpus, self.num_gpus)
        self.actors_lost = pool.run(jobs, done)
        return [outcomes[shard] for shard, _ in shards]


class ActorPool:
    """Jobs on a pool of Ray actors of one class (each built once with ``args``; ``run(*job)`` per job).

    An actor that dies takes nothing with it: its job goes to another actor (a new one only when none is
    left: a living actor holds its resources, so a new one could wait forever), at most ``MAX_ATTEMPTS``
    times; the job's own files and cache make the retry resume. ``run`` returns how many actors were lost.
    """

    def __init__(self, cls: type, args: tuple, address: str | None, workers: int | None, cpus: float, gpus: float):
        self.ray = _ray()
        if not self.ray.is_initialized():
            self.ray.init(address=address, log_to_driver=False, configure_logging=False)
        self.actor = self.ray.remote(num_cpus=cpus, num_gpus=gpus)(cls)
        self.args = args
        self.workers = workers or int(self.ray.cluster_resources().get("CPU", 1) // max(cpus, 0.01)) or 1

    def run(self, jobs: list[tuple[str, tuple]], done) -> int:
        """Every job (a name, the arguments of the actor's ``run``); ``done(name, result)`` as each ends."""
        ray = self.ray
        idle = [self.actor.remote(*self.args) for _ in range(max(1, min(len(jobs), self.workers)))]
        todo = [(name, job, 1) for name, job in jobs]
        running: dict = {}  # future -> (actor, name, job, attempt)
        lost = 0
        try:
            while todo or running:
                while todo and idle:
                    name, job, attempt = todo.pop(0)
                    worker = idle.pop()
                    running[worker.run.remote(*job)] = (worker, name, job, attempt)
                finished, _ = ray.wait(list(running), num_returns=1)
                worker, name, job, attempt = running.pop(finished[0])
                try:
                    result = ray.get(finished[0])
                except ray.exceptions.RayActorError as exc:
                    lost += 1
                    if attempt >= MAX_ATTEMPTS:
                        raise DocrerankError(
                            f"{name} lost its Ray actor {attempt} times (last: {exc}); what was done is kept: "
                            "rerun to resume, with the local executor to see the error"
                        ) from None
                    todo.append((name, job, attempt + 1))
                    if not idle and not running:  # the last actor died: a new one, wherever resources are left
                        idle.append(self.actor.remote(*self.args))
                    continue
                idle.append(worker)
                done(name, result)
        finally:
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


def _ray():
    try:
        import ray
    except ImportError:
        raise DocrerankError('the Ray executor needs Ray: pip install "docrerank[ray]"') from None
    return ray
