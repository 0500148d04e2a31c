"""What every stage of a run reads: the store, the config, the run directory, the backends and verifiers.

One context per process that runs stages: an executor that runs shards elsewhere (another process, a Ray
worker) builds its own from the same store, config and run directory, so a context is never sent anywhere.
"""

from __future__ import annotations

import random
from functools import cached_property

from docrerank.backends import Backend, ResponseCache, load_backend
from docrerank.pages import PageStore
from docrerank.pipeline.config import PipelineConfig
from docrerank.pipeline.given import GivenQueries, read_given_positives
from docrerank.pipeline.rulebased import EntityPool
from docrerank.pipeline.rundir import RunDir
from docrerank.pipeline.verify import Verifier, VerifySettings, verifier_fingerprint

__all__ = ["StageContext"]


class StageContext:
    """The store, the config, the run, the backends (one per distinct config), verifiers, seeds."""

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
        self.given = GivenQueries({}, {}, [])
        if config.positives.given is not None:
            self.given = read_given_positives(config.positives.given, store)

    @cached_property
    def positive_verifier(self) -> Verifier:
        settings = self.config.positives_verified
        return Verifier(self.backends[settings.backend], settings, self.config.max_page_chars)

    @cached_property
    def negative_verifier(self) -> Verifier:
        settings = self.config.negatives_verified
        return Verifier(self.backends[settings.backend], settings, self.config.max_page_chars)

    def verifier_fingerprint(self, settings: VerifySettings) -> dict:
        """A verification section's fingerprint, without building its verifier (a switched-off stage needs no
        token probabilities of its backend)."""
        return verifier_fingerprint(self.backends[settings.backend], settings)

    @cached_property
    def pool(self) -> EntityPool:
        """The store's entity pool (built on first use, kept beside the store)."""
        return EntityPool.for_store(self.store)

    def rng(self, stage: str, key: str) -> random.Random:
        return random.Random(f"{self.config.seed}:{stage}:{key}")

    def close(self) -> None:
        """Close the backends, then the cache: closing checkpoints SQLite's write-ahead log into cache.sqlite,
        so the file alone holds every answer (copied, archived or opened read-only)."""
        for backend in {id(b): b for b in self.backends.values()}.values():
            backend.close()
        self.cache.close()
