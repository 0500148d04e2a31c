"""The cheap evidence check: does the value a negative was edited to appear on the page, next to the query?

A controlled or rule-based negative changes one span of a positive (``changed_from`` -> ``changed_to``). If
the page mentions the new value close to the query's other content words, the page probably answers the
edited query after all ("the second shift was around 1998" when the year was edited to 1998), so the
negative is suspect. This check needs no model: it works on the page text, token by token.

Matching is on normalised tokens, so formatting does not hide a value: case, whitespace, thousands
separators (``1,000`` = ``1000``), ``5%`` = ``5 %`` = ``5 percent`` = ``5 per cent``, a number written
against its unit (``5ms`` = ``5 ms``), and a function written with or without its call parentheses
(``lm()`` = ``lm``). Content words are compared by a crude stem (one ending such as ``ed`` or ``s``
dropped, then the first six letters), the same on both sides, so ``reached``/``reach``,
``estimates``/``estimated`` and ``structure``/``structural`` meet.

The module also holds the small text helpers the other model-free steps share (``tokenize``,
``content_words``, ``stem``, ``STOPWORDS``).
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

from docrerank.pipeline.records import Evidence, QueryRecord

__all__ = [
    "STOPWORDS",
    "PageText",
    "Token",
    "check_evidence",
    "check_value",
    "content_words",
    "stem",
    "tokenize",
]

# Function words, question words and query boilerplate: never a query's "content".
STOPWORDS = frozenset(
    """
    a about above after again against all also am an and any are as at be because been before being below
    between both but by can could did do does doing done down during each either else etc ever every few for
    from further had has have having he her here hers herself him himself his how however i if in into is it
    its itself just least less let like may me might more most much must my myself neither nor now of off on
    once one only or other ought our ours ourselves out over own per rather same shall she should since so
    some such than that the their theirs them themselves then there these they this those though through
    thus to too under until up upon us very via was we well were what whatever when whenever where whereas
    wherever whether which while who whom whose why will with within would yet you your yours yourself
    yourselves
    according describe described describes description document documents explain find give given list
    mention mentioned mentions name named page pages provide provided say says show shown shows stated
    state tell use used uses using value values
    """.split()
)
# Negations change what a query asks; callers that compare meanings (the filters) keep them.
NEGATIONS = frozenset({"no", "not", "never", "without", "none", "nor", "cannot"})

_TOKEN = re.compile(
    r"(?P<num>\d{1,3}(?:,\d{3})+(?:\.\d+)?(?![\d,])|\d+(?:\.\d+)*)"  # 1,000.5 | 2021 | 0.05 | 1.2.3
    r"|(?P<word>[^\W\d_]+(?:['\u2019][^\W\d_]+)*(?:\d+(?![\d.,]?\d))?)"  # words; USIncExp2 one, v1.2 two
    r"|(?P<sym>[^\w\s]|_)"  # every other visible character on its own
)
_PERCENT_WORDS = {"percent", "pct"}
_ENDINGS = ("ing", "ed", "es", "s")


@dataclass(frozen=True)
class Token:
    """One token of a text: its normalised form and where it sits in the original string."""

    norm: str
    start: int
    end: int
    kind: str  # "num", "word" or "sym"


def _norm(kind: str, raw: str) -> str:
    text = unicodedata.normalize("NFKC", raw).casefold()
    if kind == "num":
        return text.replace(",", "")
    if kind == "word" and text in _PERCENT_WORDS:
        return "%"
    return text.replace("\u2019", "'")


def tokenize(text: str) -> list[Token]:
    """Split ``text`` into normalised tokens (numbers, words, single symbols) with their offsets.

    ``per cent`` becomes one ``%`` token, as do ``percent`` and ``%``.
    """
    tokens: list[Token] = []
    for match in _TOKEN.finditer(text):
        kind = match.lastgroup or "sym"
        norm = _norm(kind, match.group())
        if norm == "cent" and tokens and tokens[-1].norm == "per":
            tokens[-1] = Token("%", tokens[-1].start, match.end(), "word")
            continue
        tokens.append(Token(norm, match.start(), match.end(), kind))
    return tokens


def stem(word: str, length: int | None = 6) -> str:
    """A crude stem: casefolded, one ending (``ing``, ``ed``, ``es``, ``s``) dropped, cut to ``length``.

    Crude on purpose: it only has to give a query word and the page's form of it the same key.
    """
    word = word.casefold()
    for ending in _ENDINGS:
        if word.endswith(ending) and len(word) - len(ending) >= 4 and not word.endswith("ss"):
            word = word[: -len(ending)]
            break
    return word[:length] if length else word


def _key(token: Token) -> str:
    """A content token's comparison key: numbers and names with digits as they are, words stemmed."""
    return token.norm if any(c.isdigit() for c in token.norm) else stem(token.norm)


def _is_content(token: Token, keep_negations: bool) -> bool:
    if token.kind == "num":
        return True
    if token.kind != "word":
        return False
    if token.norm in NEGATIONS:
        return keep_negations
    return len(token.norm) >= 3 and token.norm not in STOPWORDS


def content_words(text: str | Sequence[Token], keep_negations: bool = False) -> list[str]:
    """The stems of a text's content words and numbers, in order (stopwords and punctuation dropped)."""
    tokens = tokenize(text) if isinstance(text, str) else text
    return [_key(t) for t in tokens if _is_content(t, keep_negations)]


def _value_tokens(value: str) -> list[str]:
    """The token sequence to look for: ``lm()`` is looked for as ``lm``."""
    norms = [token.norm for token in tokenize(value)]
    while len(norms) > 1 and norms[-2:] == ["(", ")"]:
        norms = norms[:-2]
    return norms


def _find(haystack: Sequence[Token], needle: Sequence[str]) -> list[int]:
    """Token indices where ``needle`` starts in ``haystack`` (whole tokens only)."""
    if not needle:
        return []
    first, size = needle[0], len(needle)
    return [
        i
        for i, token in enumerate(haystack[: len(haystack) - size + 1])
        if token.norm == first and all(haystack[i + k].norm == needle[k] for k in range(1, size))
    ]


class PageText:
    """A page's text, tokenised once, for many evidence checks against it.

    Example:
        >>> page = PageText("Revenue grew to 1,000 million in 2021.")
        >>> page.find("1000")
        ['Revenue grew to 1,000 million in 2021.']
    """

    def __init__(self, text: str, snippet_chars: int = 80):
        self.text = text
        self.tokens = tokenize(text)
        self.snippet_chars = snippet_chars
        self._stems = [_key(token) if _is_content(token, False) else None for token in self.tokens]

    def occurrences(self, value: str) -> list[tuple[int, int]]:
        """Token ranges ``[i, j)`` where ``value`` occurs on the page."""
        needle = _value_tokens(value)
        return [(i, i + len(needle)) for i in _find(self.tokens, needle)]

    def contains(self, value: str) -> bool:
        return bool(self.occurrences(value))

    def snippet(self, i: int, j: int) -> str:
        """The page text around tokens ``[i, j)``, whitespace collapsed, cut marks where it was cut."""
        start, end = self.tokens[i].start, self.tokens[j - 1].end
        left, right = max(0, start - self.snippet_chars), min(len(self.text), end + self.snippet_chars)
        body = " ".join(self.text[left:right].split())
        return ("\u2026" if left > 0 else "") + body + ("\u2026" if right < len(self.text) else "")

    def find(self, value: str) -> list[str]:
        """Snippets around each occurrence of ``value``."""
        return [self.snippet(i, j) for i, j in self.occurrences(value)]

    def stems_near(self, i: int, j: int, window: int) -> set[str]:
        """Content stems within ``window`` tokens either side of tokens ``[i, j)``, the span itself excluded."""
        lo, hi = max(0, i - window), min(len(self.tokens), j + window)
        return {s for k, s in enumerate(self._stems[lo:hi], lo) if s is not None and not i <= k < j}


def _query_terms(query: str, value: str) -> list[str]:
    """The query's content stems other than the edited value's own tokens (distinct, in order)."""
    tokens = tokenize(query)
    needle = _value_tokens(value)
    drop: set[int] = set()
    for i in _find(tokens, needle):
        drop.update(range(i, i + len(needle)))
    if not drop:  # the value is not literally in the query: leave out tokens equal to any of its tokens
        drop = {k for k, token in enumerate(tokens) if token.norm in needle}
    kept = [token for k, token in enumerate(tokens) if k not in drop]
    return list(dict.fromkeys(content_words(kept)))


def check_value(
    value: str,
    query: str,
    page: str | PageText,
    *,
    window: int = 25,
    min_share: float = 0.5,
    max_snippets: int = 5,
) -> Evidence:
    """Does ``value`` appear on the page, and next to the rest of ``query``?

    Args:
        value: the edited value (a record's ``changed_to``).
        query: the edited query, which contains ``value``.
        page: the page text, or a ``PageText`` made once for many checks.
        window: how many tokens either side of an occurrence count as "near".
        min_share: the share of the query's other content words (stems) that must be near one
            occurrence for ``answers``; at least one, and at least two when the query has two or more.
        max_snippets: at most this many snippets in ``found``.

    Returns:
        ``Evidence`` with the snippets around each occurrence and ``answers=True`` when the page
        plausibly answers the edited query.
    """
    page = page if isinstance(page, PageText) else PageText(page)
    if not _value_tokens(value):
        return Evidence(value=value, reason="the edited value has no text to look for")
    spans = page.occurrences(value)
    found = [page.snippet(i, j) for i, j in spans[:max_snippets]]
    if not spans:
        return Evidence(value=value, found=[], answers=False, reason=f"{value!r} is not on the page")
    terms = _query_terms(query, value)
    times = f"{len(spans)} time{'s' if len(spans) != 1 else ''}"
    if not terms:
        return Evidence(
            value=value,
            found=found,
            answers=True,
            reason=f"{value!r} is on the page ({times}) and the query has no other content words",
        )
    need = max(min(2, len(terms)), math.ceil(min_share * len(terms)))
    best: list[str] = []
    for i, j in spans:
        near = page.stems_near(i, j, window)
        hits = [term for term in terms if term in near]
        if len(hits) > len(best):
            best = hits
    share = f"{len(best)}/{len(terms)} of the query's other content words ({', '.join(best) or 'none'})"
    if len(best) >= need:
        return Evidence(
            value=value,
            found=found,
            answers=True,
            reason=f"{value!r} is on the page ({times}) with {share} within {window} tokens",
        )
    return Evidence(
        value=value,
        found=found,
        answers=False,
        reason=f"{value!r} is on the page ({times}) but at best with {share} within {window} tokens (need {need})",
    )


def check_evidence(
    record: QueryRecord,
    page_text: str | PageText,
    *,
    window: int = 25,
    min_share: float = 0.5,
    max_snippets: int = 5,
) -> Evidence:
    """The evidence check of an edited query: is ``record.changed_to`` on the page, next to the query?

    A record without ``changed_to`` (a free-form negative) gets ``value=""``, ``answers=False`` and the
    reason "no edited value to check". See ``check_value`` for the arguments.

    Example:
        >>> from docrerank.pipeline.records import QueryRecord
        >>> record = QueryRecord(query_id="q", page_id="p", kind="negative", generator="rule:year",
        ...                      text="What did sales reach in 2021?", changed_from="2020", changed_to="2021")
        >>> check_evidence(record, "Sales reached 5,000 units in 2021.").answers
        True
    """
    if not record.changed_to:
        return Evidence(value="", answers=False, reason="no edited value to check")
    return check_value(
        record.changed_to, record.text, page_text, window=window, min_share=min_share, max_snippets=max_snippets
    )
