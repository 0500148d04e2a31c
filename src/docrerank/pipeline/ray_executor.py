"""The Ray executor: the same stages over a Ray cluster, each shard run by one of a pool of Ray actors.

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

from dataclasses import dataclass

from docrerank.errors import DocrerankError
from docrerank.pages import Page, PageStore
from docrerank.pipeline.config import PipelineConfig
from docrerank.pipeline.context import StageContext
from docrerank.pipeline.executor import ProgressCallback, ShardCount, ShardOutcome, run_shard
from docrerank.pipeline.rundir import RunDir
from docrerank.pipeline.stage import Pipeline

__all__ = ["RayExecutor", "ShardWorker"]

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
        ray = _ray()
        self.actors_lost = 0
        if not ray.is_initialized():
            ray.init(address=self.address, log_to_driver=False, configure_logging=False)
        cpus = ray.cluster_resources().get("CPU", 1)
        actors = max(1, min(len(shards), self.workers or int(cpus // max(self.num_cpus, 0.01)) or 1))
        actor = ray.remote(num_cpus=self.num_cpus, num_gpus=self.num_gpus)(ShardWorker)
        args = (str(ctx.store.root), ctx.config.model_dump_json(), str(ctx.run.root.resolve()), pipeline)
        progress = ShardCount(pipeline.names, len(shards), on_progress)

        idle = [actor.remote(*args) for _ in range(actors)]
        todo = [(shard, [p.page_id for p in pages], 1) for shard, pages in shards]
        running: dict = {}  # future -> (actor, shard, page ids, attempt)
        outcomes: dict[str, ShardOutcome] = {}
        try:
            while todo or running:
                while todo and idle:
                    shard, page_ids, attempt = todo.pop(0)
                    worker = idle.pop()
                    running[worker.run.remote(shard, page_ids)] = (worker, shard, page_ids, attempt)
                finished, _ = ray.wait(list(running), num_returns=1)
                worker, shard, page_ids, attempt = running.pop(finished[0])
                try:
                    outcomes[shard] = ray.get(finished[0])
                except ray.exceptions.RayActorError as exc:
                    self.actors_lost += 1
                    if attempt >= MAX_ATTEMPTS:
                        raise DocrerankError(
                            f"shard {shard} lost its Ray actor {attempt} times (last: {exc}); what was done is "
                            "kept: rerun to resume, with the local executor to see the error"
                        ) from None
                    todo.append((shard, page_ids, attempt + 1))  # resumes from what the dead actor wrote
                    if not idle and not running:  # the last actor died: a new one, wherever resources are left
                        idle.append(actor.remote(*args))
                    continue
                idle.append(worker)
                for name in pipeline.names:
                    progress.advance(name)
        finally:
            try:  # each actor's cache checkpointed into cache.sqlite; a dead actor's is SQLite's to recover
                ray.get([w.close.remote() for w in idle], timeout=60)
            except ray.exceptions.RayError:
                pass
            for worker in idle + [r[0] for r in running.values()]:
                ray.kill(worker)
        return [outcomes[shard] for shard, _ in shards]


def _ray():
    try:
        import ray
    except ImportError:
        raise DocrerankError('the Ray executor needs Ray: pip install "docrerank[ray]"') from None
    return ray
