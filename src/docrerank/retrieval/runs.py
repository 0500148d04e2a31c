"""TREC run files: ``qid Q0 docid rank score tag`` a line, the format every IR tool reads and writes.

A run maps each query id to its ranked ``(page_id, score)`` list. Reading names every malformed line
(``FILE:LINE``) with the fix and keeps the rest, so one bad line does not lose a run.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from docrerank.errors import InputError
from docrerank.pages.store import atomic_write_bytes

__all__ = ["Ranking", "Run", "read_trec", "write_trec"]

Ranking = list[tuple[str, float]]  # (page id, score), best first
Run = dict[str, Ranking]  # query id -> ranking

_FORMAT_FIX = "write six whitespace-separated columns: query_id Q0 page_id rank score tag"


def write_trec(run: Run, path: Path, tag: str = "docrerank") -> None:
    """Write ``run`` (atomically); ranks start at 1 and follow each ranking's order."""
    if any(char.isspace() for char in tag):
        raise ValueError(f"a run tag cannot contain whitespace: {tag!r}")
    lines = []
    for query_id, ranking in run.items():
        for rank, (page_id, score) in enumerate(ranking, start=1):
            lines.append(f"{query_id} Q0 {page_id} {rank} {score:.6f} {tag}\n")
    atomic_write_bytes(Path(path), "".join(lines).encode())


def read_trec(path: Path) -> tuple[Run, list[InputError]]:
    """A run file's rankings (sorted by score, best first; ties by rank) and an error per bad line."""
    rows: dict[str, list[tuple[float, int, str]]] = defaultdict(list)
    errors = []
    for number, line in enumerate(Path(path).read_text().splitlines(), start=1):
        if not line.strip():
            continue
        item = f"{path}:{number}"
        fields = line.split()
        if len(fields) != 6:
            errors.append(InputError(item, f"{len(fields)} columns instead of 6", _FORMAT_FIX))
            continue
        query_id, _, page_id, rank, score, _ = fields
        try:
            rows[query_id].append((float(score), int(rank), page_id))
        except ValueError:
            errors.append(InputError(item, f"rank {rank!r} or score {score!r} is not a number", _FORMAT_FIX))
    run = {qid: [(pid, score) for score, _, pid in sorted(r, key=lambda x: (-x[0], x[1]))] for qid, r in rows.items()}
    return run, errors
