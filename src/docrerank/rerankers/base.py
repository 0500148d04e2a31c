"""The reranker interface: score (query, page) pairs, rank a query's candidate pages, save and load.

A page is given as a ``Page`` of a store, or a ``PageContent`` (text, and an image when one is loaded);
each reranker says which of the two it reads (``uses``). Scores are higher for more relevant pages; their
scale is the reranker's own (a probability for the True/False and cross-encoder rerankers).

A pair that cannot be scored (a page without text for a text reranker, without an image for an image one, a
model call that failed on it) is a per-pair result, never an exception that stops the others: ``score`` gives
it ``UNSCORED`` (-inf), so it ranks last, and ``score_results`` says why (``PairScore.error``).

A saved reranker folder (``reranker.json``) names what it builds, so ``load`` refuses, unless called with
``allow_remote=True``, a folder whose backend would send an API key to a host other than this machine or run
the model's own code (``trust_remote_code``): loading a folder someone else wrote must not do either silently.
"""

from __future__ import annotations

import ipaddress
import json
import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import urlsplit

from pydantic import ValidationError

from docrerank.errors import DocrerankError
from docrerank.pages.content import PageLike

__all__ = ["CONFIG_FILE", "UNSCORED", "PairScore", "Reranker", "UntrustedRerankerError", "page_text"]

CONFIG_FILE = "reranker.json"
# the score of a pair that could not be scored: below every score, so it ranks last
UNSCORED = float("-inf")


class UntrustedRerankerError(DocrerankError):
    """A saved reranker would send an API key off this machine or run remote code, and was not allowed to."""


@dataclass(frozen=True)
class PairScore:
    """One (query, page) pair's result: its score, or (``error`` set, score ``UNSCORED``) why there is none."""

    score: float
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    @classmethod
    def failed(cls, error: str) -> PairScore:
        return cls(UNSCORED, error)


def page_text(page: PageLike) -> str:
    """The text of a page in any of the forms a reranker takes."""
    return page if isinstance(page, str) else page.text


def page_name(page: PageLike) -> str:
    """How an error names a page: its id when it has one."""
    return f"page {getattr(page, 'page_id', None) or '(no id)'}"


def missing_text(page: PageLike) -> str | None:
    """Why a reranker that reads page text cannot score ``page`` (it has no text), or None."""
    if page_text(page).strip():
        return None
    return (
        f"{page_name(page)} has no text: ingest it with OCR (--ocr auto), or rerank with a reranker that reads images"
    )


def scored_where_text(
    pairs: Sequence[tuple[str, PageLike]], score: Callable[[list[tuple[str, PageLike]]], list[float]]
) -> list[PairScore]:
    """``score`` over the pairs whose page has text; a page without text is a failure (ranked last)."""
    problems = [missing_text(page) for _, page in pairs]
    scorable = [i for i, problem in enumerate(problems) if problem is None]
    scores = dict(zip(scorable, score([pairs[i] for i in scorable]) if scorable else [], strict=True))
    return [PairScore.failed(problem) if problem else PairScore(scores[i]) for i, problem in enumerate(problems)]


def _results_from_scores(scores: Sequence[float]) -> list[PairScore]:
    """Results of a reranker that reports only scores: a score that is not finite is a failure."""
    return [
        PairScore(float(s)) if math.isfinite(s) else PairScore.failed(f"the reranker gave no score ({s})")
        for s in scores
    ]


class Reranker(ABC):
    """Scores (query, page) pairs; ``rank`` orders one query's candidates."""

    kind: ClassVar[str]
    uses: ClassVar[frozenset[str]]  # "text", "image"
    # a pair's score depends on that pair alone (so it can be cached and batched with any other pairs); the
    # cascade's depends on the other candidates of its query
    pairwise: ClassVar[bool] = True

    @abstractmethod
    def score(self, pairs: Sequence[tuple[str, PageLike]]) -> list[float]:
        """One score per (query, page) pair, in order, computed in batches; a pair that cannot be scored gets
        ``UNSCORED`` (-inf) and the others are scored (``score_results`` says why)."""

    def score_results(self, pairs: Sequence[tuple[str, PageLike]]) -> list[PairScore]:
        """One ``PairScore`` per pair, in order: the score, or why the pair could not be scored.

        The rerankers of this package override it (and ``score`` reads it); this default, for a reranker that
        implements ``score`` alone, takes a score that is not finite as a failure."""
        return _results_from_scores(self.score(pairs))

    def score_sets(self, sets: Sequence[Sequence[tuple[str, PageLike]]]) -> list[list[float]]:
        """Scores of several candidate sets (e.g. the requests a server batches) in one call, one list per set.

        A pair's score depends on that pair alone for every reranker but the cascade, whose scores depend on
        the other candidates of the set; this default scores all the pairs as one batch."""
        return split_sets(self.score([pair for candidates in sets for pair in candidates]), sets)

    def score_set_results(self, sets: Sequence[Sequence[tuple[str, PageLike]]]) -> list[list[PairScore]]:
        """``score_sets`` with a ``PairScore`` per pair: the score, or why the pair could not be scored.

        This default scores a pairwise reranker's pairs as one batch (``score_results``), and reads another's
        ``score_sets`` (a score that is not finite is a failure)."""
        if not self.pairwise:
            return [_results_from_scores(scores) for scores in self.score_sets(sets)]
        return split_sets(self.score_results([pair for candidates in sets for pair in candidates]), sets)

    def rank(self, query: str, pages: Sequence[PageLike], top_k: int | None = None) -> list[tuple[str, float]]:
        """``(page_id, score)`` best first (ties keep the input order); the ``top_k`` best when given. A page
        that could not be scored ranks last with ``UNSCORED``; ``rank_results`` also says why."""
        return self.rank_results(query, pages, top_k)[0]

    def rank_results(
        self, query: str, pages: Sequence[PageLike], top_k: int | None = None
    ) -> tuple[list[tuple[str, float]], dict[str, str]]:
        """``rank``, and the pages that could not be scored (page id -> why; they rank last, in input order)."""
        results = self.score_results([(query, page) for page in pages])
        ids = [getattr(page, "page_id", None) or str(i) for i, page in enumerate(pages)]
        ranked = sorted(zip(ids, (r.score for r in results), strict=True), key=lambda item: -item[1])
        failed = {page_id: r.error for page_id, r in zip(ids, results, strict=True) if r.error is not None}
        return (ranked[:top_k] if top_k is not None else ranked), failed

    def settings(self) -> dict[str, Any]:
        """What ``save`` writes beside the weights, so ``load`` rebuilds the same reranker."""
        return {}

    @classmethod
    def from_saved(cls, settings: dict[str, Any], folder: Path, where: str, *, allow_remote: bool = False) -> Reranker:
        """The reranker ``save`` wrote into ``folder``, from the rest of its ``reranker.json`` (``settings``).

        This default suits a reranker whose weights are the folder: the model is the folder, the settings its
        keyword arguments. ``where`` names the document in errors; ``allow_remote``: as for ``load``."""
        return cls(model=str(folder), **settings)

    def save(self, path: str | Path) -> None:
        """Write the reranker (weights where it has them, and ``reranker.json``) into the folder ``path``."""
        folder = Path(path)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / CONFIG_FILE).write_text(json.dumps({"kind": self.kind, **self.settings()}, indent=2) + "\n")

    @staticmethod
    def load(path: str | Path, *, allow_remote: bool = False) -> Reranker:
        """A saved reranker, of whichever kind its ``reranker.json`` names.

        A folder whose backend would send an API key to another machine or run the model's own code
        (``trust_remote_code``) is refused (``UntrustedRerankerError``) unless ``allow_remote`` is true."""
        config_path = Path(path) / CONFIG_FILE
        if not config_path.is_file():
            raise DocrerankError(
                f"{path} holds no saved reranker ({CONFIG_FILE} is missing): give the folder `save` wrote"
            )
        try:
            settings = json.loads(config_path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise DocrerankError(f"{config_path} is not readable JSON ({exc}): save the reranker again") from None
        if not isinstance(settings, dict):
            raise DocrerankError(f"{config_path} is not a reranker document (a JSON object): save the reranker again")
        return Reranker.from_settings(settings, Path(path), str(config_path), allow_remote=allow_remote)

    @staticmethod
    def from_settings(settings: dict[str, Any], folder: Path, where: str, *, allow_remote: bool = False) -> Reranker:
        """The reranker a ``reranker.json`` document describes (``kind`` and the settings); ``folder`` is where
        its weights are and what relative paths in it are relative to; ``where`` names it in errors.
        ``allow_remote``: as for ``load``."""
        settings = dict(settings)
        kind = settings.pop("kind", None)
        if not allow_remote:
            _refuse_remote(kind, settings, where)
        try:
            return _build(kind, settings, folder, where, allow_remote)
        except (TypeError, ValidationError) as exc:
            # a setting this version does not take, a bad backend config; any other TypeError is a bug: raised
            if isinstance(exc, TypeError) and "unexpected keyword argument" not in str(exc):
                raise
            raise DocrerankError(f"{where}: bad {kind} reranker settings ({exc}): save the reranker again") from None


def split_sets(flat: Sequence[Any], sets: Sequence[Sequence[Any]]) -> list[list[Any]]:
    """``flat`` cut into lists as long as each of ``sets``."""
    result, start = [], 0
    for candidates in sets:
        result.append(list(flat[start : start + len(candidates)]))
        start += len(candidates)
    return result


def is_loopback_host(host: str) -> bool:
    """Whether ``host`` (a name or an address, IPv6 bracketed or not) is this machine only: 127.0.0.0/8, ::1,
    localhost. Any other name may resolve anywhere."""
    host = host.strip("[]").rstrip(".").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def remote_actions(backend: Any) -> list[str]:
    """What building a backend from this config (an object or a dict) would do beyond this machine: send an
    API key to another host, run the code that comes with the model. Empty when neither."""
    if isinstance(backend, dict):
        from docrerank.backends import load_backend_config

        try:
            backend = load_backend_config(backend)
        except ValueError:
            return []  # not a backend config: building it fails with that error
    actions = []
    key, url = getattr(backend, "api_key_env", None), getattr(backend, "base_url", None)
    if key and url is not None and not is_loopback_host(urlsplit(url).hostname or ""):
        actions.append(f"send the API key in ${key} to {url}")
    if getattr(backend, "trust_remote_code", False):
        actions.append(f"run the code that comes with the model {backend.model!r} (trust_remote_code)")
    return actions


def _refuse_remote(kind: Any, settings: dict[str, Any], where: str) -> None:
    """Raise ``UntrustedRerankerError`` when the reranker a document describes would act beyond this machine
    (only an LLM reranker builds a backend from the document; a cascade's inline teacher is one)."""
    if kind == "cascade" and isinstance(settings.get("teacher"), dict):
        teacher = dict(settings["teacher"])
        _refuse_remote(teacher.pop("kind", None), teacher, where)
    backend = settings.get("backend")
    if kind == "llm" and isinstance(backend, dict):
        actions = remote_actions(backend)
        if actions:
            raise UntrustedRerankerError(
                f"{where}: loading this saved reranker would {' and '.join(actions)}. Load it only if you trust "
                "whoever wrote it: --trust-reranker on the command line, Reranker.load(..., allow_remote=True) "
                "in Python"
            )


def _build(kind: Any, settings: dict[str, Any], folder: Path, where: str, allow_remote: bool) -> Reranker:
    from docrerank.rerankers.registry import RERANKER_KINDS  # it imports every reranker, and so this module

    if not isinstance(kind, str) or kind not in RERANKER_KINDS:
        raise DocrerankError(f"{where}: unknown reranker kind {kind!r}: one of {', '.join(RERANKER_KINDS)}")
    return RERANKER_KINDS[kind].cls.from_saved(settings, folder, where, allow_remote=allow_remote)
