"""Fair turns for the model: one worker owns it, the requests waiting share each of its calls.

Only one ``reranker.score_sets`` call runs at a time (a model is not assumed thread-safe, and a call already in
the model cannot be stopped). Each request is a job of pairs; a batch of up to ``max_batch_pairs`` pairs takes a
share of every waiting job in turn (round-robin over the jobs, the rotation moving on each batch), so a
1,000-document request is scored in chunks that take turns with the other clients' requests, and a small request
finishes after a batch or two however large the others are. Requests arriving within ``max_wait_ms`` of an idle
worker are batched together. Pairs accepted and not yet scored are bounded (``max_queued_pairs``): past it a
request is refused with ``Busy`` (503 with Retry-After).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import math
import time
from dataclasses import dataclass, field

from docrerank.pages.content import PageLike
from docrerank.rerankers.base import Reranker
from docrerank.server.schemas import BatchStats, ModelStatus

__all__ = ["Busy", "RerankBatcher", "RerankerFailed"]

log = logging.getLogger(__name__)


@dataclass(eq=False)
class _Job:
    """One request's pairs; handed to the model in chunks, its scores filled in as they come."""

    pairs: list[tuple[str, PageLike]]
    future: asyncio.Future = field(repr=False)
    divisible: bool = True  # False: scored in one call (a reranker whose scores depend on the whole set)
    handed: int = 0  # pairs given to batches
    scored: int = 0
    scores: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.scores = [math.nan] * len(self.pairs)

    @property
    def left(self) -> int:
        return len(self.pairs) - self.handed


@dataclass(eq=False)
class _Slice:
    job: _Job
    start: int
    end: int

    @property
    def pairs(self) -> list[tuple[str, PageLike]]:
        return self.job.pairs[self.start : self.end]


class RerankerFailed(Exception):
    """``reranker.score_sets`` raised on a request's pairs."""


class Busy(Exception):
    """The queue is full: answered 503 with ``Retry-After: retry_after`` seconds."""

    def __init__(self, queued: int, limit: int, retry_after: int):
        self.queued, self.limit, self.retry_after = queued, limit, retry_after
        super().__init__(
            f"the server is busy: {queued} pairs are waiting to be scored, and this request's would take them over "
            f"the limit of {limit} (max_queued_pairs); retry after {retry_after} s"
        )


class RerankBatcher:
    """Scores the pairs of concurrent requests, one ``reranker.score_sets`` call at a time, taking turns.

    Each call holds up to ``max_batch_pairs`` pairs: every waiting request gets an equal share in turn (the
    order rotating each call) and what is left of the room goes to the next ones in turn, so one large request
    cannot starve the others. A reranker whose scores depend on the whole candidate set (``pairwise`` false,
    the cascade) has each request scored in one call. When a call on several requests raises, each request's
    part is scored again alone, so one bad request fails only itself. Pairs accepted and not yet scored are
    bounded by ``max_queued_pairs``: past it ``score`` raises ``Busy``.
    """

    def __init__(
        self,
        reranker: Reranker,
        max_wait_ms: float = 5.0,
        max_batch_pairs: int = 64,
        max_queued_pairs: int | None = None,
    ):
        self.reranker, self.max_wait, self.max_batch_pairs = reranker, max_wait_ms / 1000, max_batch_pairs
        self.max_queued_pairs = max_queued_pairs
        self.stats = BatchStats()
        self.status: ModelStatus = "cold"
        self._rotation: collections.deque[_Job] = collections.deque()  # jobs with pairs not yet handed out
        self._live: set[_Job] = set()  # jobs not yet answered
        self._arrived: asyncio.Event | None = None
        self._worker: asyncio.Task | None = None
        self._seconds_per_pair: float | None = None

    async def start(self) -> None:
        self._arrived = asyncio.Event()
        self._worker = asyncio.create_task(self._run(), name="rerank-batcher")

    async def stop(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            try:
                await self._worker
            except asyncio.CancelledError:
                pass

    @property
    def queued_pairs(self) -> int:
        return sum(len(job.pairs) - job.scored for job in self._live)

    @property
    def waiting_requests(self) -> int:
        """Requests accepted and not yet answered."""
        return len(self._live)

    def retry_after(self, pairs: int) -> int:
        """Seconds until ``pairs`` more would fit, at the measured speed (5 before anything is measured)."""
        if self._seconds_per_pair is None or self.max_queued_pairs is None:
            return 5
        excess = self.queued_pairs + pairs - self.max_queued_pairs
        return max(1, min(3600, math.ceil(excess * self._seconds_per_pair)))

    async def score(self, pairs: list[tuple[str, PageLike]]) -> list[float]:
        """The scores of ``pairs``, in order; ``RerankerFailed`` when the reranker raised on them, ``Busy`` when
        the queue has no room for them."""
        if self._arrived is None:
            raise RuntimeError("the batcher is not started: `await batcher.start()` in the running loop")
        if not pairs:
            return []
        queued = self.queued_pairs
        if self.max_queued_pairs is not None and queued + len(pairs) > self.max_queued_pairs:
            self.stats.busy += 1
            raise Busy(queued, self.max_queued_pairs, self.retry_after(len(pairs)))
        job = _Job(pairs, asyncio.get_running_loop().create_future(), divisible=self.reranker.pairwise)
        self._live.add(job)
        self._rotation.append(job)
        self._arrived.set()
        try:
            return await job.future
        finally:
            self._drop(job)

    async def warm_up(self, pair: tuple[str, PageLike]) -> None:
        """Score one pair so that the model is loaded (``status``: loading, then ready or failed)."""
        self.status = "loading"
        try:
            await self.score([pair])
        except Exception as exc:
            self.status = "failed"
            log.error("the model failed to load (its warm-up pair raised): %r", exc)

    def _drop(self, job: _Job) -> None:
        self._live.discard(job)
        if job in self._rotation:
            self._rotation.remove(job)

    async def _gather(self) -> None:
        """Wait for work; then, for up to ``max_wait``, for more requests while a batch is not full."""
        assert self._arrived is not None
        while not self._rotation:
            self._arrived.clear()
            await self._arrived.wait()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.max_wait
        while sum(job.left for job in self._rotation) < self.max_batch_pairs:
            left = deadline - loop.time()
            if left <= 0:
                break
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), left)
            except asyncio.TimeoutError:
                break

    def _take(self) -> list[_Slice]:
        """The next batch: each waiting job's share in turn, then the room left to the next in turn. The next
        batch starts with the first job that got nothing in this one (with more jobs than room, each waits for
        its turn, not for the jobs ahead of it to finish), or with the second when all got some."""
        for job in [job for job in self._rotation if job.left == 0 or job.future.done()]:
            self._rotation.remove(job)
        jobs = list(self._rotation)
        room, share = self.max_batch_pairs, math.ceil(self.max_batch_pairs / max(1, len(jobs)))
        slices: dict[_Job, _Slice] = {}
        for fill in (False, True):  # first everyone's share, then the rest of the room in turn
            for job in jobs:
                if room <= 0:
                    break
                if not job.divisible:
                    if fill or (slices and job.left > room):
                        continue
                    size = job.left  # whole, and alone when it is over the room
                else:
                    size = min(job.left, room if fill else share, room)
                if job in slices:
                    slices[job].end += size
                else:
                    slices[job] = _Slice(job, job.handed, job.handed + size)
                job.handed += size
                room -= size
        first_unserved = next((n for n, job in enumerate(jobs) if job not in slices), 0)
        self._rotation.rotate(-(first_unserved or 1))
        for job in [job for job in self._rotation if job.left == 0]:
            self._rotation.remove(job)
        return list(slices.values())

    async def _run(self) -> None:
        while True:
            await self._gather()
            batch = self._take()
            if not batch:
                continue
            try:
                await self._score(batch)
            except Exception as exc:  # a bug here must not stop the worker: fail the batch, serve on
                log.exception("the rerank batcher failed on a batch")
                for part in batch:
                    self._fail(part.job, RerankerFailed(f"internal error: {exc!r}"))

    async def _call(self, batch: list[_Slice]) -> list[list[float]]:
        """One reranker call for the slices' pairs, each slice a candidate set of its own (``score_sets``)."""
        self.stats.batches += 1
        started = time.monotonic()
        try:
            scores = await asyncio.to_thread(self.reranker.score_sets, [part.pairs for part in batch])
        except Exception:
            self.stats.failed_batches += 1
            raise
        sizes = [part.end - part.start for part in batch]
        if [len(s) for s in scores] != sizes:
            raise RuntimeError(f"the reranker gave {sum(map(len, scores))} scores for {sum(sizes)} pairs")
        self.stats.pairs += sum(sizes)
        self.status = "ready"
        per_pair = (time.monotonic() - started) / sum(sizes)
        previous = self._seconds_per_pair
        self._seconds_per_pair = per_pair if previous is None else 0.8 * previous + 0.2 * per_pair
        return scores

    async def _score(self, batch: list[_Slice]) -> None:
        try:
            scores = await self._call(batch)
        except Exception as exc:
            if len(batch) == 1:
                self._fail(batch[0].job, exc)
                return
            log.warning("the reranker failed on a batch of %d requests (%r); scoring each alone", len(batch), exc)
            for part in batch:
                if part.job.future.done():
                    continue
                try:
                    self._fill(part, (await self._call([part]))[0])
                except Exception as part_exc:
                    self._fail(part.job, part_exc)
            return
        for part, part_scores in zip(batch, scores, strict=True):
            self._fill(part, part_scores)

    def _fill(self, part: _Slice, scores: list[float]) -> None:
        job = part.job
        job.scores[part.start : part.end] = [float(s) for s in scores]
        job.scored += part.end - part.start
        if job.scored == len(job.pairs):
            self.stats.requests += 1
            self._live.discard(job)
            if not job.future.done():  # done: the client went away
                job.future.set_result(job.scores)

    def _fail(self, job: _Job, exc: Exception) -> None:
        if job.future.done():
            return
        log.error("the reranker failed on a request of %d pairs", len(job.pairs), exc_info=exc)
        self._drop(job)
        message = str(exc) if isinstance(exc, RerankerFailed) else f"{type(exc).__name__}: {exc}"
        job.future.set_exception(RerankerFailed(message))
