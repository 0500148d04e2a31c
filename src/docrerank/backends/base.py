"""The backend interface: batches of chats in, generations or choice probabilities out, in order.

Subclasses implement two coroutines over the requests the cache could not answer (``_generate`` and
``_score_choices``); this base class does the rest once for all of them: capability checks, the response
cache, de-duplication inside a batch, JSON parsing for structured output, ids, and counters. Per-request
failures come back as results with ``error`` set; nothing one request does fails the batch.
"""

from __future__ import annotations

import asyncio
import math
import os
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Coroutine, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextvars import ContextVar
from dataclasses import dataclass
from enum import Enum
from typing import Any, ClassVar, TypeVar

from pydantic import BaseModel, ConfigDict

from docrerank.backends.cache import ResponseCache, cache_key
from docrerank.backends.messages import ChatRequest, ChoiceRequest, ChoiceScores, Generation
from docrerank.backends.structured import parse_structured
from docrerank.errors import DocrerankError

__all__ = [
    "Backend",
    "BackendConfig",
    "BackendStats",
    "Capability",
    "CapabilityError",
    "choice_variants",
    "emit_result",
    "run_sync",
    "scores_from_logprobs",
    "scores_from_top_tokens",
]

T = TypeVar("T")


class Capability(str, Enum):
    """What a backend can do beyond plain text generation."""

    IMAGES = "images"  # page images in the chat
    LOGPROBS = "logprobs"  # next-token probabilities, for score_choices
    JSON_SCHEMA = "json_schema"  # output constrained to a JSON schema while decoding


class CapabilityError(DocrerankError):
    """A stage needs a capability that the configured backend does not have."""


class BackendConfig(BaseModel):
    """Settings common to every backend; each backend subclasses it with ``type`` as a literal."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: str
    label: str | None = None  # a name for logs and stats; defaults to the type and model


@dataclass
class BackendStats:
    """Counters since the backend was created."""

    requests_sent: int = 0
    cache_hits: int = 0
    errors: int = 0
    retries: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    busy_s: float = 0.0  # wall time spent inside uncached calls


def run_sync(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to completion from sync code, also when an event loop is already running."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coroutine)
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


def choice_variants(choice: str) -> list[str]:
    """Spellings of one answer that a model may put first: case and a leading space."""
    bases = dict.fromkeys([choice, choice.lower(), choice.capitalize(), choice.upper()])
    return list(dict.fromkeys([*bases, *(" " + b for b in bases)]))


def _logsumexp(values: Sequence[float]) -> float:
    top = max(values)
    if top == -math.inf:
        return -math.inf
    return top + math.log(sum(math.exp(v - top) for v in values))


def scores_from_logprobs(choices: Sequence[str], variant_logprobs: dict[str, list[float]]) -> ChoiceScores:
    """Turn the log-probabilities of each choice's variants into normalised choice probabilities.

    Works in log space, so choices the model finds very unlikely (log-probability far below -700) still
    get well-defined relative probabilities.
    """
    per_choice = {c: _logsumexp(variant_logprobs.get(c) or [-math.inf]) for c in choices}
    total = _logsumexp(list(per_choice.values()))
    if total == -math.inf:
        return ChoiceScores(error=f"none of the choices {list(choices)} has any probability at the next token")
    probs = {c: math.exp(lp - total) for c, lp in per_choice.items()}
    return ChoiceScores(probs=probs, logprobs=per_choice, mass=math.exp(total))


def scores_from_top_tokens(choices: Sequence[str], pairs: list[tuple[str, float]]) -> ChoiceScores:
    """Choice scores from a top-k list of (token text, log-probability), as servers return them.

    A choice missing from the top k gets the smallest listed log-probability: an upper bound on its
    true value, and the best the list tells.
    """
    if not pairs:
        return ChoiceScores(error="the model returned an empty top-k list")
    floor = min(lp for _, lp in pairs)
    by_choice: dict[str, list[float]] = {}
    for choice in choices:
        spellings = set(choice_variants(choice))
        by_choice[choice] = [lp for token, lp in pairs if token in spellings] or [floor]
    return scores_from_logprobs(choices, by_choice)


# Set by the base class around a backend call: backends call ``emit_result`` as each result completes.
_RESULT_HOOK: ContextVar[Callable[[int, Any], None] | None] = ContextVar("docrerank_result_hook", default=None)


def emit_result(position: int, result: Any) -> None:
    """Hand one finished result (its position in the batch sent to the backend) to the base class early.

    Backends that produce results one by one call this as each completes, so that the response cache holds
    every finished response even if the process dies before the batch ends. Calling it is optional.
    """
    hook = _RESULT_HOOK.get()
    if hook is not None:
        hook(position, result)


def _log_answered(operation: str, key: str) -> None:
    """Append the key of each answer a model gave to ``$DOCRERANK_REQUEST_LOG``, when set: an audit trail
    that shows, across runs and crashes, whether a request already answered was ever sent again."""
    path = os.environ.get("DOCRERANK_REQUEST_LOG")
    if path:
        with open(path, "a") as log:
            log.write(f"{operation} {key}\n")


class Backend(ABC):
    """One model behind the common interface. Build it from its config; use it batch by batch.

    Subclasses set ``type_name``, ``install_hint``, ``config_class`` and ``best_capabilities``, implement
    ``identity``, ``_generate`` and ``_score_choices``, and may override ``capabilities`` (when a config has
    less than the best) and ``aclose``.
    """

    type_name: ClassVar[str]
    install_hint: ClassVar[str]
    config_class: ClassVar[type[BackendConfig]]
    # what the type can do at best, known without a config or a model (`backends list`, capability errors)
    best_capabilities: ClassVar[frozenset[Capability]]

    def __init__(self, config: BackendConfig, cache: ResponseCache | None = None):
        self.config = config
        self.cache = cache
        self.stats = BackendStats()

    # -- what a subclass provides -------------------------------------------------------------------

    @property
    def capabilities(self) -> frozenset[Capability]:
        """What this backend, with its config, can do: by default its type's best."""
        return self.best_capabilities

    @abstractmethod
    def identity(self) -> dict[str, Any]:
        """What decides this backend's outputs (type, model, output-relevant settings): the cache key."""

    @abstractmethod
    async def _generate(self, requests: list[ChatRequest]) -> list[Generation]: ...

    @abstractmethod
    async def _score_choices(self, requests: list[ChoiceRequest]) -> list[ChoiceScores]: ...

    async def aclose(self) -> None:  # noqa: B027 - optional hook; most backends hold nothing to release
        """Release what the backend holds (connections, models)."""

    # -- the interface --------------------------------------------------------------------------------

    @property
    def label(self) -> str:
        return self.config.label or f"{self.type_name}:{getattr(self.config, 'model', '?')}"

    def require(self, *needed: Capability, stage: str) -> None:
        """Fail at start-up, naming the backends that could do it, when ``stage`` needs what this lacks."""
        from docrerank.backends.registry import backends_with

        missing = [cap for cap in needed if cap not in self.capabilities]
        if missing:
            names = ", ".join(f"{cap.value}: {', '.join(backends_with(cap))}" for cap in missing)
            raise CapabilityError(
                f"{stage} needs {', '.join(c.value for c in missing)}, which backend {self.label!r} does not "
                f"have. Backends that can ({names}); choose one of them for this stage in the config"
            )

    async def agenerate(self, requests: Sequence[ChatRequest]) -> list[Generation]:
        """Generate for every request, in order; cached responses are not sent again."""
        requests = list(requests)
        if any(r.has_images for r in requests):
            self.require(Capability.IMAGES, stage="a request with page images")
        results = await self._through_cache("generate", requests, self._generate, Generation)
        for request, result in zip(requests, results, strict=True):
            result.id = request.id
        return results

    async def ascore_choices(self, requests: Sequence[ChoiceRequest]) -> list[ChoiceScores]:
        """Next-token probabilities of each request's choices, in order."""
        requests = list(requests)
        self.require(Capability.LOGPROBS, stage="choice scoring")
        if any(r.has_images for r in requests):
            self.require(Capability.IMAGES, stage="a request with page images")
        results = await self._through_cache("choices", requests, self._score_choices, ChoiceScores)
        for request, result in zip(requests, results, strict=True):
            result.id = request.id
        return results

    def generate(self, requests: Sequence[ChatRequest]) -> list[Generation]:
        """Sync ``agenerate``."""
        return run_sync(self.agenerate(requests))

    def score_choices(self, requests: Sequence[ChoiceRequest]) -> list[ChoiceScores]:
        """Sync ``ascore_choices``."""
        return run_sync(self.ascore_choices(requests))

    def close(self) -> None:
        run_sync(self.aclose())

    # -- shared machinery -----------------------------------------------------------------------------

    async def _through_cache(
        self,
        operation: str,
        requests: list,
        call: Callable[[list], Coroutine[Any, Any, list]],
        result_type: type[BaseModel],
    ) -> list:
        identity = self.identity()
        keys = [cache_key(identity, operation, r.cache_payload()) for r in requests]
        found = self.cache.get_many(keys) if self.cache is not None else {}
        results: list = [None] * len(requests)
        for index, key in enumerate(keys):
            if key in found:
                results[index] = result_type.model_validate({**found[key], "cached": True})
        self.stats.cache_hits += sum(r is not None for r in results)

        first_index: dict[str, int] = {}
        for index, (key, result) in enumerate(zip(keys, results, strict=True)):
            if result is None:
                first_index.setdefault(key, index)
        todo_keys = list(first_index)
        if todo_keys:
            todo_requests = [requests[first_index[key]] for key in todo_keys]
            saved: set[int] = set()

            def save(position: int, result: Any) -> None:
                """Cache one fresh result as soon as it exists, so a run killed mid-batch loses none."""
                if position in saved:
                    return
                saved.add(position)
                _log_answered(operation, todo_keys[position])
                if operation == "generate":
                    parse_structured(todo_requests[position], result)
                if self.cache is not None and (result.error is None or getattr(result, "output_error", False)):
                    value = result.model_dump(mode="json", exclude={"id", "cached"})
                    self.cache.put_many([(todo_keys[position], operation, value)])

            token = _RESULT_HOOK.set(save)
            started = time.perf_counter()
            try:
                fresh = await call(todo_requests)
            finally:
                _RESULT_HOOK.reset(token)
            self.stats.busy_s += time.perf_counter() - started
            self.stats.requests_sent += len(todo_keys)
            by_key = {}
            for position, (key, result) in enumerate(zip(todo_keys, fresh, strict=True)):
                save(position, result)
                self.stats.prompt_tokens += result.usage.prompt_tokens  # generations and choice scores
                self.stats.completion_tokens += result.usage.completion_tokens
                self.stats.errors += result.error is not None
                self.stats.retries += max(0, result.attempts - 1)
                by_key[key] = result
            for index, key in enumerate(keys):
                if results[index] is None:  # the first request of a key gets the result, repeats a copy
                    results[index] = by_key[key] if first_index[key] == index else by_key[key].model_copy(deep=True)
        return results
