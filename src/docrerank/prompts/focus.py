"""The focused page view: what a judge reads of a page when it reads for one question.

A judge (the verifier, the zero-shot reranker, the teacher) shown the whole page reads its first 4,000
characters for every (question, page): ~1,100 tokens of prompt evaluation, the whole cost of a pair on a CPU
when pages are not shared. The focused view shows the page's first line (its heading) and the passages of
the page that best match the question (BM25 within the page, bm25s), in page order, up to
``focus_chars``: a prompt a few times shorter. It shares less: two questions about one page no longer
share their page prefix (the two verification prompts of one question still do). A page that fits in
``focus_chars`` is shown whole. bench/verify.py and bench/decision.py measure which view wins.
"""

from __future__ import annotations

import re
from typing import Literal

__all__ = ["DEFAULT_FOCUS_CHARS", "PAGE_VIEWS", "PageView", "focused_text", "passages"]

PageView = Literal["whole", "focused"]
PAGE_VIEWS: tuple[str, ...] = ("whole", "focused")
DEFAULT_FOCUS_CHARS = 1200  # the heading and about two passages of ~80 words
PASSAGE_WORDS = 80
GAP = "\n[…]\n"  # before a passage that does not follow the one shown above it


def passages(text: str, words: int = PASSAGE_WORDS) -> list[str]:
    """The page cut into runs of whole lines of at most ``words`` words (a longer line is cut by words)."""
    chunks: list[str] = []
    current: list[str] = []
    count = 0
    for line in text.splitlines():
        tokens = line.split()
        if not tokens:
            continue
        while len(tokens) > words:  # a line longer than a passage (running text without line breaks)
            if current:
                chunks.append("\n".join(current))
                current, count = [], 0
            chunks.append(" ".join(tokens[:words]))
            tokens = tokens[words:]
        if count + len(tokens) > words and current:
            chunks.append("\n".join(current))
            current, count = [], 0
        current.append(" ".join(tokens))
        count += len(tokens)
    if current:
        chunks.append("\n".join(current))
    return chunks


def _tokens(text: str) -> list[str]:
    return re.findall(r"\w+", text.lower())


def focused_text(query: str, text: str, focus_chars: int = DEFAULT_FOCUS_CHARS) -> tuple[str, bool]:
    """The page's first line and its passages that best match ``query``, in page order, within about
    ``focus_chars`` (the best passage is shown even when it alone is longer: the caller's character cap
    applies after); and whether anything of the page was left out. A page that fits is returned whole."""
    text = text.strip()
    if len(text) <= focus_chars:
        return text, False
    heading, _, body = text.partition("\n")
    heading = heading.strip()[: focus_chars // 4]
    chunks = passages(body)
    if not chunks:
        return heading, True
    from docrerank.retrieval.bm25 import import_bm25s  # retrieval imports the page store: only when used

    bm25s = import_bm25s()
    index = bm25s.BM25()
    index.index([_tokens(chunk) or ["\0"] for chunk in chunks], show_progress=False)
    scores = index.get_scores(_tokens(query))
    order = sorted(range(len(chunks)), key=lambda i: (-scores[i], i))  # ties: earlier on the page
    budget = focus_chars - len(heading)
    chosen: list[int] = []
    for i in order:  # the best passage always; then the next best while they fit
        if chosen and len(chunks[i]) + len(GAP) > budget:
            break
        chosen.append(i)
        budget -= len(chunks[i]) + len(GAP)
    pieces, previous = [heading], -1
    for i in sorted(chosen):
        pieces.append(chunks[i] if i == previous + 1 else GAP.strip("\n") + "\n" + chunks[i])
        previous = i
    return "\n".join(pieces).strip(), True
