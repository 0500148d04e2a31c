"""Rule-based hard negatives: edit exactly one span of a positive query, with no model.

The cheap generator beside the LLM ones: it finds the spans of a positive query that carry a checkable
value (a year, a number, a unit, a version string, a named entity, a function or option name) and writes
negatives that change exactly one of them, in the spirit of the paper's controlled variants (2021 -> 2011,
Apple -> IBM). A negative is only useful if the page cannot answer it, so each new value is checked against
the page (``evidence.check_value``): values the page never mentions come first, values it mentions away
from the query's other words next, and values it mentions next to them (the page would answer the edited
query) are never used.

Rules, with the generator and the property (a name of the ``general`` property set) each one records:

- ``rule:year`` (``date``): a year (1500-2099) shifted by 1, 2, 3, 5 or 10 years.
- ``rule:number`` (``number``): an integer, decimal or percentage shifted or scaled, in the same format
  (decimals, thousands separators, ``%``; a percentage of at most 100 stays at most 100).
- ``rule:unit`` (``unit``): the unit of a quantity moved one or two sizes within its kind (ms -> s,
  MB -> GB, days -> weeks, million -> billion); ``%`` becomes percentage points only when the query
  talks about a change (rose, fell, increase, ...), where the two say different things.
- ``rule:version`` (``version``): a version string bumped (1.2.3 -> 1.2.4, 1.3.0, 2.0.0, 1.1.0, 1.2.2).
- ``rule:entity`` (``named entity``): a name (``Hansen``, ``Achim Zeileis``), an acronym (CUSUM), a
  package (``strucchange``); (``option/function/command name``): a function (``lm()``), an option
  (``--verbose``, ``alpha =``), a code identifier (``coint.res``).

For quantities, ``changed_from``/``changed_to`` hold the whole quantity (``5 ms`` -> ``5 s``, ``5%`` ->
``10%``), so the evidence check looks for the new quantity rather than a bare number.

Entities are swapped with one of the same kind from an ``EntityPool``, built once from the pages of the
store: a function for a function, a package for a package, a name for a name. Given the positive's
document, its own entities come first (``lm()`` -> ``glm()`` of the same manual, not a function of another
one), then those of other documents seen on at least ``SHARED_MIN_PAGES`` pages: a name seen once elsewhere
is too often an extraction artefact (``wkI()``) or unrelated to the query.

Example:
    >>> import random
    >>> from docrerank.pipeline.records import QueryRecord, query_id
    >>> text = "Which test did Hansen run on the 2021 survey of 1,200 firms?"
    >>> positive = QueryRecord(query_id=query_id("p1", "positive", text), page_id="p1", kind="positive",
    ...                        text=text, generator="given")
    >>> page = "In 2021 Hansen ran a test on a survey of 1,200 firms. Andrews and Ploberger wrote on it in 1994."
    >>> pool = EntityPool.from_texts([page, "Kuan and Hornik (1995) studied it."])
    >>> for negative in rule_based_negatives(positive, page, pool, 3, random.Random(0)):
    ...     print(negative.generator, negative.changed_from, "->", negative.changed_to)
    rule:year 2021 -> 2022
    rule:entity Hansen -> Hornik
    rule:number 1,200 -> 120
"""

from __future__ import annotations

import hashlib
import logging
import random
import re
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Iterator
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

from docrerank import __version__
from docrerank.pages.store import atomic_write_bytes
from docrerank.pipeline.evidence import STOPWORDS, PageText, check_value
from docrerank.pipeline.records import QueryRecord

if TYPE_CHECKING:
    from docrerank.pages.record import Page
    from docrerank.pages.store import PageStore

log = logging.getLogger(__name__)

__all__ = [
    "ENTITY_PROPERTIES",
    "RULES",
    "SHARED_MIN_PAGES",
    "RULE_PROPERTIES",
    "EntityKind",
    "EntityPool",
    "Span",
    "find_spans",
    "rule_based_negatives",
]

Rule = Literal["year", "number", "unit", "version", "entity"]
RULES: tuple[Rule, ...] = ("year", "number", "unit", "version", "entity")
RULE_PROPERTIES = {"year": "date", "number": "number", "unit": "unit", "version": "version"}
SHARED_MIN_PAGES = 2  # an entity of another document is swapped in only when this many pages mention it

EntityKind = Literal["name", "acronym", "package", "function", "option", "identifier"]
ENTITY_KINDS: tuple[EntityKind, ...] = ("name", "acronym", "package", "function", "option", "identifier")
_CODE = "option/function/command name"
ENTITY_PROPERTIES: dict[str, str] = {
    "name": "named entity",
    "acronym": "named entity",
    "package": "named entity",
    "function": _CODE,
    "option": _CODE,
    "identifier": _CODE,
}

# ---------------------------------------------------------------------------------------------- units


@dataclass(frozen=True)
class _Unit:
    group: str
    rank: int  # order of size within the group
    abbrevs: tuple[str, ...] = ()
    singular: str | None = None
    plural: str | None = None

    @property
    def forms(self) -> tuple[str, ...]:
        return tuple(f for f in (*self.abbrevs, self.singular, self.plural) if f)


def _units(group: str, *entries: tuple[tuple[str, ...], str | None, str | None]) -> list[_Unit]:
    return [_Unit(group, rank, abbrevs, one, many) for rank, (abbrevs, one, many) in enumerate(entries)]


_UNITS: list[_Unit] = [
    *_units(
        "time",
        (("ns",), "nanosecond", "nanoseconds"),
        (("µs", "us"), "microsecond", "microseconds"),
        (("ms", "msec"), "millisecond", "milliseconds"),
        (("s", "sec", "secs"), "second", "seconds"),
        (("min", "mins"), "minute", "minutes"),
        (("h", "hr", "hrs"), "hour", "hours"),
        ((), "day", "days"),
        ((), "week", "weeks"),
        ((), "month", "months"),
        (("yr", "yrs"), "year", "years"),
    ),
    *_units(
        "data",
        (("B",), "byte", "bytes"),
        (("KB", "kB", "KiB", "kb"), "kilobyte", "kilobytes"),
        (("MB", "MiB", "mb"), "megabyte", "megabytes"),
        (("GB", "GiB", "gb"), "gigabyte", "gigabytes"),
        (("TB", "TiB", "tb"), "terabyte", "terabytes"),
        (("PB", "PiB"), "petabyte", "petabytes"),
    ),
    *_units("bitrate", (("kbps", "Kbps"), None, None), (("Mbps",), None, None), (("Gbps",), None, None)),
    *_units(
        "frequency",
        (("Hz",), "hertz", "hertz"),
        (("kHz",), "kilohertz", "kilohertz"),
        (("MHz",), "megahertz", "megahertz"),
        (("GHz",), "gigahertz", "gigahertz"),
    ),
    *_units("length", (("nm",), None, None), (("mm",), None, None), (("cm",), None, None), (("km",), None, None)),
    *_units(
        "mass",
        (("mg",), "milligram", "milligrams"),
        (("g",), "gram", "grams"),
        (("kg",), "kilogram", "kilograms"),
        ((), "tonne", "tonnes"),
    ),
    *_units("power", (("W",), "watt", "watts"), (("kW",), "kilowatt", "kilowatts"), (("MW",), "megawatt", "megawatts")),
    *_units("energy", (("Wh",), None, None), (("kWh",), None, None), (("MWh",), None, None), (("GWh",), None, None)),
    *_units(
        "magnitude",
        ((), "thousand", "thousand"),
        ((), "million", "million"),
        ((), "billion", "billion"),
        ((), "trillion", "trillion"),
    ),
]
_UNIT_OF_FORM: dict[str, _Unit] = {form: unit for unit in _UNITS for form in unit.forms}
_PERCENT_FORMS = ("%", "percent", "per cent")
_POINT_FORMS = ("percentage points", "percentage point", "basis points", "basis point")
_ALL_UNIT_FORMS = sorted([*_UNIT_OF_FORM, *_PERCENT_FORMS, *_POINT_FORMS], key=len, reverse=True)
# A query about a change in a percentage: there "5%" and "5 percentage points" say different things.
_CHANGE_WORDS = re.compile(
    r"\b(?:increas\w*|decreas\w*|ris(?:e|es|en|ing)|rose|f[ae]ll(?:s|en|ing)?|gr[eo]w\w*|declin\w*|drop\w*|"
    r"chang\w*|gain\w*|los[st]\w*|jump\w*|climb\w*|higher|lower|up|down|point\w*)\b",
    re.IGNORECASE,
)

# ------------------------------------------------------------------------------------------ patterns

_NUM = r"\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?"
_QUANTITY = re.compile(
    rf"(?<![\w.,/:])(?<!\d-)(?P<num>{_NUM})"
    rf"(?:(?P<sp>[ \u00a0]?)(?P<unit>{'|'.join(re.escape(form) for form in _ALL_UNIT_FORMS)})(?![\w%]))?"
    r"(?![\w%]|[.,/:]\d)"
)
# A year: 1500-2099, alone or as a citation year (1992a); not a decade (1990s), a date part or a code value.
_YEAR = re.compile(r"(?<![\w.,/:$€£-])(?P<year>1[5-9]\d\d|20\d\d)(?=[a-rt-z]?(?![\w%])(?![.,/:-]\d))")
_VERSION = re.compile(r"(?<![\w.])(?P<prefix>[vV])?(?P<version>\d+(?:\.\d+){1,3})(?![\w]|\.\d)")
_VERSION_CUE = re.compile(r"(?:\b(?i:versions?|releases?|ver\.?)|\b(?:R|Python|Java|PHP|Perl|Ruby))\s*$")

_WORD = re.compile(r"[^\W\d_]+(?:['\u2019-][^\W\d_]+)*")
_CALL = re.compile(r"(?<![\w.$@])(?P<name>[A-Za-z][\w.]*[A-Za-z0-9_])\((?P<empty>\))?(?!\d{4}[a-z]?\))")
_FLAG = re.compile(r"(?<![\w-])--[A-Za-z][\w-]*[A-Za-z0-9]")
_ARGUMENT = re.compile(r"(?:(?<=[(,])|(?<=[(,] ))(?P<name>[A-Za-z][\w.]*)\s*=(?!=)")
_ASSIGNED = re.compile(r"(?<![\w.])(?P<name>[A-Za-z][\w.]*)\s*=(?!=)")
_DOTTED = re.compile(r"(?<![\w.])[A-Za-z][A-Za-z0-9]*(?:[._][A-Za-z0-9]+)+(?![\w(])")
_CAMEL = re.compile(r"(?<![\w.])[A-Za-z][0-9A-Za-z]*(?![\w(])")
_ACRONYM = re.compile(r"(?<![\w.-])[A-Z][A-Z0-9]{1,5}(?![\w-])")
_QUOTED = re.compile(r"[`\"'](?P<name>[A-Za-z][\w.]*)[`\"']")
_PACKAGE = [
    re.compile(r"\b(?:library|require|requireNamespace)\(\s*[\"']?(?P<name>[A-Za-z][\w.]*)"),
    re.compile(r"\binstall\.packages\(\s*(?:c\(\s*)?[\"'](?P<name>[A-Za-z][\w.]*)"),
    re.compile(r"(?m)^\s*(?:>>>\s*)?(?:import|from)\s+(?P<name>[A-Za-z_][\w]*)"),
    re.compile(r"\bpip3?\s+install\s+(?:-U\s+)?(?P<name>[A-Za-z][\w.-]*[A-Za-z0-9])"),
    re.compile(r"\b(?:R|Python|CRAN|PyPI|Bioconductor)\s+package\s+[\"'`]?(?P<name>[A-Za-z][\w.]*)"),
]
_DATASET = re.compile(r"\bdata\(\s*[\"']?(?P<name>[A-Za-z][\w.]*)")
_CODE_LINE = re.compile(r"^\s*(?:>>>|>|\+|\$|#|\.\.\.)\s|<-|;\s*$")
_CODE_NEIGHBOURS = frozenset(
    "function functions command commands method methods call calls routine package packages library module "
    "argument arguments option options parameter parameters flag flags object objects class dataset".split()
)
_NOT_CALLS = frozenset({"if", "for", "while", "switch", "function", "return", "repeat", "in", "and", "or", "not"})
_NAME_CONNECTORS = frozenset({"of", "de", "van", "von", "der", "den", "du", "da", "del", "la", "le", "di", "&"})
_NOT_NAMES = frozenset(
    """
    Figure Fig Figures Table Tables Section Sections Chapter Chapters Appendix Equation Eq Eqs Page Pages Part
    Abstract Introduction Conclusion Conclusions Summary References Reference Example Examples Note Notes
    Theorem Lemma Definition Proof Remark Step Steps Algorithm Listing Box Panel Source Sources Keywords
    January February March April May June July August September October November December
    Jan Feb Mar Apr Jun Jul Aug Sep Sept Oct Nov Dec
    Monday Tuesday Wednesday Thursday Friday Saturday Sunday
    """.split()
)
_ROMAN = re.compile(r"^[IVXLCDM]+$")


def _overlaps(a: tuple[int, int], b: tuple[int, int]) -> bool:
    return a[0] < b[1] and b[0] < a[1]


def _is_code_shaped(token: str) -> bool:
    """``coint.res``, ``max_iter``, ``USIncExp2``, ``supF``: a name only code has (not ``e.g.``, not prose)."""
    if "." in token or "_" in token:
        parts = re.split(r"[._]", token)
        if not any(len(p) >= 3 for p in parts):
            return False
        # "framework.The": two sentences without the space, not code
        return not any(p[:1].isupper() and p[1:].islower() for p in parts[1:])
    has_digit = any(c.isdigit() for c in token)
    has_lower = any(c.islower() for c in token)
    camel = token[:1].islower() and any(c.isupper() for c in token[1:])
    return (has_digit and has_lower and token[:1].isalpha()) or camel


def _prose_words(text: str) -> set[str]:
    """Lower-case words used as plain words: outside code lines, not quoted, not called, not dotted."""
    words: set[str] = set()
    for line in text.splitlines():
        if _CODE_LINE.search(line):
            continue
        for match in _WORD.finditer(line):
            word = match.group()
            before = line[match.start() - 1] if match.start() else " "
            after = line[match.end()] if match.end() < len(line) else " "
            if word[:1].islower() and before not in "\"'`(._$=" and after not in "\"'`(._=":
                words.add(word.casefold())
    return words


def _is_name_word(word: str, prose: Collection[str]) -> bool:
    return (
        len(word) >= 2
        and word[:1].isupper()
        and word[1:2].islower()  # Zeileis, McDonald; not USIncExp
        and word not in _NOT_NAMES
        and word.casefold() not in prose
        and word.casefold() not in STOPWORDS
    )


def _sentence_start(text: str, start: int) -> bool:
    """Is ``start`` the start of a sentence (or of a line after a line that ends a block: a number, a
    bracket)? Lines of page text often start mid-sentence, after a line ending in a word or a comma."""
    before = text[:start]
    stripped = before.rstrip()
    if not stripped or stripped[-1] in ".!?:":
        return True
    return "\n" in before[len(stripped) :] and not (stripped[-1].isalpha() or stripped[-1] in ",;&-")


def _name_spans(text: str, prose: Collection[str]) -> list[tuple[int, int]]:
    """Runs of 1-4 capitalised name words (connectors such as ``of`` allowed inside), on one line.

    A single word counts only away from the start of a sentence, where any word is capitalised.
    """
    words = list(_WORD.finditer(text))
    spans: list[tuple[int, int]] = []
    i = 0
    while i < len(words):
        if not _is_name_word(words[i].group(), prose):
            i += 1
            continue
        run = [words[i]]
        j = i + 1
        while j < len(words):
            gap = text[run[-1].end() : words[j].start()]
            if gap not in (" ", "\u00a0"):
                break
            word = words[j].group()
            if _is_name_word(word, prose):
                run.append(words[j])
            elif word in _NAME_CONNECTORS and j + 1 < len(words) and _is_name_word(words[j + 1].group(), prose):
                run.extend([words[j], words[j + 1]])
                j += 1
            else:
                break
            j += 1
        i = j
        names = [w for w in run if w.group() not in _NAME_CONNECTORS]
        if len(names) > 4:  # a title or a list of authors, not one name
            continue
        if len(names) == 1 and _sentence_start(text, run[0].start()):
            continue
        if len(names) == 1 and text[run[0].start() - 1 : run[0].start()] == "(" and text[run[0].end() :][:1] == ")":
            continue  # "(Intercept)": a label, not a name
        spans.append((run[0].start(), run[-1].end()))
    return spans


# ---------------------------------------------------------------------------------------------- pool


def _page_entities(text: str, prose: Collection[str]) -> dict[str, set[str]]:
    """The entities of one page, by kind."""
    found: dict[str, set[str]] = {kind: set() for kind in ENTITY_KINDS}
    for pattern in _PACKAGE:
        found["package"].update(m.group("name") for m in pattern.finditer(text))
    found["package"] = {p for p in found["package"] if p.casefold() not in STOPWORDS and len(p) >= 2}
    for match in _CALL.finditer(text):
        name = match.group("name")
        if name not in _NOT_CALLS and name not in found["package"]:
            found["function"].add(name)
    found["option"].update(_FLAG.findall(text))
    for line in text.splitlines():
        if _CODE_LINE.search(line) or _CALL.search(line):
            found["option"].update(m.group("name") for m in _ARGUMENT.finditer(line) if len(m.group("name")) >= 2)
    found["identifier"].update(m.group("name") for m in _DATASET.finditer(text))
    for pattern in (_DOTTED, _CAMEL):
        found["identifier"].update(m.group() for m in pattern.finditer(text) if _is_code_shaped(m.group()))
    found["identifier"] -= found["function"] | found["package"]
    for match in _ACRONYM.finditer(text):
        token = match.group()
        if (
            sum(c.isalpha() for c in token) >= 2
            and not _ROMAN.match(token)
            and token not in _UNIT_OF_FORM
            and token.casefold() not in prose
        ):
            found["acronym"].add(token)
    code = found["package"] | found["function"] | found["option"] | found["identifier"]
    found["name"].update(text[a:b] for a, b in _name_spans(text, prose) if text[a:b] not in code)
    return found


class EntityPool(BaseModel):
    """Entities seen in a store's pages, by kind, for swapping into rule-based negatives.

    ``entities[kind][text]`` is the number of pages that mention ``text``. Build it once per store
    (``EntityPool.from_store(store)``); it is plain data, so it can be saved with a run
    (``model_dump_json``) and read back (``model_validate_json``).

    Kinds: ``name`` (capitalised names of 1-4 words seen mid-sentence: people, places, organisations,
    products; runs of more than 4 words are titles or author lists and are skipped), ``acronym`` (CUSUM,
    OLS), ``package`` (from ``library(x)``, ``import x``, ``pip install x``, "R package x"), ``function``
    (``name(`` in the text), ``option`` (``--flag``, and argument names in calls: ``alpha = 0.05``),
    ``identifier`` (code-shaped names: ``coint.res``, ``max_iter``, ``USIncExp2``, ``data("x")`` sets).
    ``code_words`` are function and package names never used as plain words in the store: a query may name
    them bare (``coxph``) and still be recognised; other known names need a cue (``the plot function``).
    ``documents[doc_id][kind]`` lists the entities of each document's pages (pools built from pages only).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    entities: dict[str, dict[str, int]] = Field(default_factory=dict)
    code_words: list[str] = Field(default_factory=list)
    documents: dict[str, dict[str, list[str]]] = Field(default_factory=dict)

    _sorted: dict[str, list[str]] = PrivateAttr(default_factory=dict)
    _kind_of: dict[str, str] = PrivateAttr(default_factory=dict)

    def model_post_init(self, context: object, /) -> None:
        for kind in ENTITY_KINDS:
            counts = self.entities.get(kind, {})
            self._sorted[kind] = sorted(counts, key=lambda e: (-counts[e], e))
        # a name several kinds claim is taken as the most specific one
        for kind in ("acronym", "name", "option", "identifier", "package", "function"):
            for entity in self.entities.get(kind, {}):
                self._kind_of[entity] = kind

    @classmethod
    def from_texts(cls, texts: Iterable[str]) -> EntityPool:
        """A pool from page texts (of no known document)."""
        texts = texts if isinstance(texts, (list, tuple)) else list(texts)
        return cls._build(lambda: ((None, text) for text in texts))

    @classmethod
    def from_pages(cls, pages: Iterable[Page]) -> EntityPool:
        """A pool from pages: a list of them, or a ``PageStore`` (read twice, never held in memory at once)."""
        if iter(pages) is pages:  # a one-shot iterator: keep its texts for the second pass
            pages = list(pages)
        return cls._build(lambda: ((page.doc_id, page.text) for page in pages))

    @classmethod
    def from_store(cls, store: PageStore) -> EntityPool:
        """A pool from every page of a store."""
        return cls.from_pages(store)

    @classmethod
    def for_store(cls, store: PageStore) -> EntityPool:
        """The store's pool, built once and kept beside its pages (``derived/entity-pool-<key>.json``).

        Building reads every page (seconds for a thousand pages), and every run on the store needs the same
        pool; the key changes with the store's pages and the docrerank version, so a stale pool is never
        read. A store that cannot be written to gets its pool built again each time.
        """
        blob = "\n".join([__version__, "documents", *sorted(store.page_ids)]).encode()
        path = Path(store.root) / "derived" / f"entity-pool-{hashlib.sha256(blob).hexdigest()[:16]}.json"
        if path.is_file():
            try:
                return cls.model_validate_json(path.read_text())
            except ValueError:
                pass  # a damaged file: build again
        pool = cls.from_store(store)
        try:
            atomic_write_bytes(path, pool.model_dump_json().encode())
        except OSError as exc:
            log.info("the entity pool cannot be kept in %s (%s): it is rebuilt on each run", path.parent, exc)
        return pool

    @classmethod
    def _build(cls, pages: Callable[[], Iterator[tuple[str | None, str]]]) -> EntityPool:
        """Two passes over the (document, text) of the pages: the plain-word vocabulary first (it decides
        what is a name), then the entities."""
        prose: set[str] = set()
        for _, text in pages():
            prose |= _prose_words(text)
        counts: dict[str, Counter[str]] = {kind: Counter() for kind in ENTITY_KINDS}
        documents: dict[str, dict[str, set[str]]] = {}
        for doc_id, text in pages():
            for kind, entities in _page_entities(text, prose).items():
                counts[kind].update(entities)
                if doc_id is not None and entities:
                    documents.setdefault(doc_id, {}).setdefault(kind, set()).update(entities)
        code_words = sorted(
            e for kind in ("function", "package") for e in counts[kind] if e.isalpha() and e.casefold() not in prose
        )
        return cls(
            entities={kind: dict(sorted(c.items())) for kind, c in counts.items() if c},
            code_words=code_words,
            documents={doc: {kind: sorted(found) for kind, found in kinds.items()} for doc, kinds in documents.items()},
        )

    def of_kind(self, kind: str) -> list[str]:
        """The entities of one kind, most frequent first (ties by text)."""
        return self._sorted.get(kind, [])

    def swaps(self, kind: str, document: str | None) -> tuple[list[str], list[str]]:
        """The entities of ``kind`` to swap in, as two tiers: those of ``document`` and those of other
        documents that ``SHARED_MIN_PAGES`` pages mention. With no document, every entity is in the second."""
        if document is None:
            return [], self.of_kind(kind)
        own = self.documents.get(document, {}).get(kind, [])
        pages = self.entities.get(kind, {})
        mine = set(own)
        return list(own), [e for e in self.of_kind(kind) if e not in mine and pages[e] >= SHARED_MIN_PAGES]

    def kind_of(self, entity: str) -> str | None:
        """The kind the pool knows ``entity`` as, if any."""
        return self._kind_of.get(entity)

    def __len__(self) -> int:
        return sum(len(v) for v in self.entities.values())


# --------------------------------------------------------------------------------------------- spans


@dataclass(frozen=True)
class Span:
    """A span of a query that a rule can edit: ``query[start:end] == text``."""

    rule: Rule
    start: int
    end: int
    text: str
    kind: str = ""  # the entity kind, for rule "entity"
    number: str = ""  # for quantities: the number part
    unit: str = ""  # for quantities: the unit part as written ("" when none)
    unit_at: int = 0  # offset of the unit inside text


def _quantity_spans(query: str) -> list[Span]:
    spans = []
    for match in _QUANTITY.finditer(query):
        number, unit = match.group("num"), match.group("unit") or ""
        if not unit and re.fullmatch(r"1[5-9]\d\d|20\d\d", number):
            continue  # a year, for the year rule
        if unit == "s" and not match.group("sp") and re.fullmatch(r"1[5-9]\d0|20\d0", number):
            continue  # a decade (the 1990s), not seconds
        unit_at = match.start("unit") - match.start() if unit else 0
        common = {"start": match.start(), "end": match.end(), "text": match.group(), "number": number}
        spans.append(Span("number", **common, unit=unit, unit_at=unit_at))
        if unit:
            spans.append(Span("unit", **common, unit=unit, unit_at=unit_at))
    return spans


def _version_spans(query: str, pool: EntityPool) -> list[Span]:
    spans = []
    for match in _VERSION.finditer(query):
        version = match.group("version")
        before = query[: match.start()]
        previous = re.search(r"(\S+)\s*$", before)
        cued = (
            version.count(".") >= 2
            or match.group("prefix")
            or _VERSION_CUE.search(before)
            or (previous is not None and pool.kind_of(previous.group(1)) in ("package", "name"))
        )
        if cued:
            spans.append(Span("version", match.start("version"), match.end("version"), version))
    return spans


def _entity_spans(query: str, page_text: str, pool: EntityPool) -> list[Span]:
    spans: list[Span] = []

    def add(start: int, end: int, kind: str) -> None:
        if not any(_overlaps((start, end), (s.start, s.end)) for s in spans):
            spans.append(Span("entity", start, end, query[start:end], kind=kind))

    for match in _CALL.finditer(query):
        if match.group("name") not in _NOT_CALLS:
            kind = pool.kind_of(match.group("name"))
            add(match.start(), match.end() if match.group("empty") else match.end("name"), kind or "function")
    for match in _FLAG.finditer(query):
        add(match.start(), match.end(), "option")
    for match in _ASSIGNED.finditer(query):
        add(match.start("name"), match.end("name"), "option")
    for match in _QUOTED.finditer(query):
        name = match.group("name")
        add(match.start("name"), match.end("name"), pool.kind_of(name) or "identifier")
    for pattern in (_DOTTED, _CAMEL):
        for match in pattern.finditer(query):
            if _is_code_shaped(match.group()):
                add(match.start(), match.end(), pool.kind_of(match.group()) or "identifier")
    words = list(_WORD.finditer(query))
    for k, match in enumerate(words):  # bare known code names: unambiguous ones, or next to a cue word
        kind = pool.kind_of(match.group())
        if kind not in ("function", "package", "option", "identifier"):
            continue
        neighbours = {w.group().casefold() for w in words[max(0, k - 1) : k + 2]} - {match.group().casefold()}
        if match.group() in pool.code_words or neighbours & _CODE_NEIGHBOURS:
            add(match.start(), match.end(), kind)
    for match in _ACRONYM.finditer(query):
        token = match.group()
        if sum(c.isalpha() for c in token) >= 2 and not _ROMAN.match(token) and token not in _UNIT_OF_FORM:
            add(match.start(), match.end(), "acronym")
    prose = _prose_words(page_text) | _prose_words(query)
    for start, end in _name_spans(query, prose):
        add(start, end, "name")
    return spans


def find_spans(query: str, page_text: str, pool: EntityPool, rules: Collection[str] = RULES) -> list[Span]:
    """The spans of ``query`` that ``rules`` can edit, in query order.

    Overlaps are settled by priority: a version string, then a quantity with a unit (``2000 MB``), then a
    year, then a bare number, then an entity (``number`` and ``unit`` share their quantity's span).
    """
    unknown = set(rules) - set(RULES)
    if unknown:
        raise ValueError(f"unknown rules {sorted(unknown)}: choose from {list(RULES)}")
    chosen: list[Span] = []
    versions = _version_spans(query, pool)
    years = [Span("year", m.start(), m.end(), m.group()) for m in _YEAR.finditer(query)]
    quantities = _quantity_spans(query)
    with_unit = [s for s in quantities if s.unit]  # "2000 MB" is a quantity, not a year
    plain = [s for s in quantities if not s.unit]
    entities = _entity_spans(query, page_text, pool)
    for group in (versions, with_unit, years, plain, entities):
        taken = [(s.start, s.end) for s in chosen]
        chosen.extend(s for s in group if not any(_overlaps((s.start, s.end), t) for t in taken))
    return sorted((s for s in chosen if s.rule in rules), key=lambda s: (s.start, RULES.index(s.rule)))


# ----------------------------------------------------------------------------------------- new values


def _years(span: Span) -> list[str]:
    year = int(span.text)
    return [str(year + d) for d in (-1, 1, -2, 2, -3, 3, -5, 5, -10, 10) if 1000 <= year + d <= 2099]


def _format_number(value: Decimal, decimals: int, commas: bool, width: int) -> str:
    quantum = Decimal(1).scaleb(-decimals)
    value = value.quantize(quantum, rounding=ROUND_HALF_UP)
    text = f"{value:,.{decimals}f}" if commas else f"{value:.{decimals}f}"
    return text.zfill(width) if width else text


def _numbers(span: Span) -> list[str]:
    raw = span.number
    digits = raw.replace(",", "")
    decimals = len(digits.split(".")[1]) if "." in digits else 0
    try:
        value = Decimal(digits)
    except InvalidOperation:
        return []
    width = len(digits) if decimals == 0 and digits.startswith("0") and len(digits) > 1 else 0
    step = Decimal(1).scaleb(-decimals)
    if decimals == 0 and value >= 20:  # round numbers move in round steps: 1000 -> 1100, 900
        trailing = len(digits) - len(digits.rstrip("0"))
        step = Decimal(10) ** min(trailing, max(len(digits) - 2, 0))
    if value == 0:
        options = [step * k for k in (1, 2, 5, 10)]
    else:
        options = [value + step, value - step, value * 2, value / 2, value + 2 * step, value * 10, value / 10]
        # a halved or tenth value must keep the precision, or 72 / 10 would read as 7
        options = [o for o in options if o == o.quantize(step.min(Decimal(1)), rounding=ROUND_HALF_UP)]
    percent = span.unit in _PERCENT_FORMS
    out: list[str] = []
    for option in options:
        if value > 0 and option <= 0 or percent and value <= 100 < option:
            continue
        text = _format_number(option, decimals, "," in raw, width)
        if text != raw and Decimal(text.replace(",", "")) != value and text not in out:
            out.append(text)
    return [t + span.text[len(span.number) :] for t in out]


def _unit_form(unit: _Unit, like: str, number: str) -> str | None:
    """How ``unit`` is written in place of the unit written ``like`` after ``number``."""
    was_abbrev = like in _UNIT_OF_FORM and like in _UNIT_OF_FORM[like].abbrevs
    plural = number.replace(",", "") not in ("1", "1.0")
    word = unit.plural if plural else unit.singular
    if was_abbrev and unit.abbrevs:
        lower = [a for a in unit.abbrevs if a.islower()]
        return lower[0] if like.islower() and lower else unit.abbrevs[0]
    if word:
        return word.capitalize() if like[:1].isupper() else word
    return unit.abbrevs[0] if unit.abbrevs else None


def _units_for(span: Span, query: str, rng: random.Random) -> list[str]:
    unit, number = span.unit, span.number
    before = span.text[: span.unit_at]  # the number and the space after it, if any
    spaced = before if before != number else number + " "  # a unit word needs a space: 5ms -> 5 seconds
    if unit in _PERCENT_FORMS:
        return [spaced + "percentage points"] if _CHANGE_WORDS.search(query) else []
    if unit in _POINT_FORMS:
        return [number + "%"] + ([spaced + "percentage points"] if unit.startswith("basis") else [])
    current = _UNIT_OF_FORM[unit]
    # the next size up or down first, then two sizes away; never further (5 ms -> 5 weeks is no hard negative)
    group = [u for u in _UNITS if u.group == current.group and 0 < abs(u.rank - current.rank) <= 2]
    rng.shuffle(group)
    group.sort(key=lambda u: abs(u.rank - current.rank))
    out = []
    for other in group:
        form = _unit_form(other, unit, number)
        if form and form != unit:
            out.append((before if form in other.abbrevs else spaced) + form)
    return out


def _versions(span: Span) -> list[str]:
    parts = [int(p) for p in span.text.split(".")]
    n = len(parts)

    def make(head: list[int]) -> str:
        return ".".join(str(p) for p in head + [0] * (n - len(head)))

    options = []
    if n >= 3:
        options.append(make(parts[:-1] + [parts[-1] + 1]))
    options += [make([parts[0], parts[1] + 1]), make([parts[0] + 1])]
    if parts[1] > 0:
        options.append(make([parts[0], parts[1] - 1]))
    if n >= 3 and parts[-1] > 0:
        options.append(make(parts[:-1] + [parts[-1] - 1]))
    return [o for o in dict.fromkeys(options) if o != span.text]


def _entities(
    span: Span, query: str, pool: EntityPool, rng: random.Random, limit: int, document: str | None
) -> list[str]:
    call = span.text.endswith("()")
    old = span.text[:-2] if call else span.text
    taken = {w.casefold() for w in re.findall(r"[\w.-]+", query)}
    options: list[str] = []
    for tier in pool.swaps(span.kind, document):  # the document's own entities first
        usable = [
            e
            for e in tier
            if e.casefold() not in taken and old.casefold() not in e.casefold() and e.casefold() not in old.casefold()
        ]
        chosen = rng.sample(usable, min(limit - len(options), len(usable)))  # seeded: negatives vary across queries
        if span.kind == "name":  # prefer names as long as the old one: Hansen -> Andrews, not -> Achim Zeileis
            words = len(old.split())
            chosen.sort(key=lambda e: abs(len(e.split()) - words))
        options += chosen
    return [e + "()" if call else e for e in options]


def _new_values(
    span: Span, query: str, pool: EntityPool, rng: random.Random, limit: int, document: str | None
) -> list[str]:
    if span.rule == "year":
        values = _years(span)
    elif span.rule == "number":
        values = _numbers(span)
    elif span.rule == "unit":
        return _units_for(span, query, rng)[:limit]
    elif span.rule == "version":
        values = _versions(span)
    else:
        return _entities(span, query, pool, rng, limit, document)
    rng.shuffle(values)  # preference among equals is random (seeded); the page check ranks them below
    return values[:limit]


# ----------------------------------------------------------------------------------------- generator


@dataclass
class _Slot:
    span: Span
    tiers: tuple[list[QueryRecord], list[QueryRecord]] = field(default_factory=lambda: ([], []))


def rule_based_negatives(
    positive: QueryRecord,
    page_text: str,
    pool: EntityPool,
    max_negatives: int,
    rng: random.Random,
    *,
    rules: Collection[str] = RULES,
    candidates_per_span: int = 24,
    document: str | None = None,
) -> list[QueryRecord]:
    """Up to ``max_negatives`` negatives of ``positive``, each changing exactly one span of its text.

    Args:
        positive: the query the page answers (kind ``positive`` or ``rephrased``).
        page_text: the text of the positive's page.
        pool: entities of the store, for the ``entity`` rule (``EntityPool.from_store``).
        max_negatives: at most this many negatives.
        rng: the randomness (``random.Random(seed)``); the same inputs and the same seed give the same
            negatives.
        rules: which of ``RULES`` to apply.
        candidates_per_span: at most this many new values are tried per span.
        document: the positive's ``doc_id``: entities swap to this document's own first, and to another
            document's only when ``SHARED_MIN_PAGES`` pages mention them (None: any entity of the pool).

    Returns:
        Negatives in preference order: spans take turns (in a seeded order), and every new value the page
        never mentions comes before any value the page mentions. A value that the page mentions next to the
        query's other content words (``evidence.check_value`` says ``answers``) is never used. Each record
        carries ``changed_from``/``changed_to`` (``query[start:end]`` before and after), the rule as
        ``generator``, the property, and the ``Evidence`` of its new value.

    Raises:
        ValueError: ``positive`` is a negative, or a rule is unknown.
    """
    if positive.kind == "negative":
        raise ValueError(f"query {positive.query_id} is a negative: rule-based negatives start from a positive")
    query = positive.text
    page = PageText(page_text)
    seen = {" ".join(query.split()).casefold()}
    slots: list[_Slot] = []
    for span in find_spans(query, page_text, pool, rules):
        slot = _Slot(span)
        for value in _new_values(span, query, pool, rng, candidates_per_span, document):
            text = query[: span.start] + value + query[span.end :]
            key = " ".join(text.split()).casefold()
            if key in seen:
                continue
            evidence = check_value(value, text, page)
            if evidence.answers:
                continue
            seen.add(key)
            prop = ENTITY_PROPERTIES[span.kind] if span.rule == "entity" else RULE_PROPERTIES[span.rule]
            record = QueryRecord.negative_of(
                positive,
                text,
                f"rule:{span.rule}",
                property=prop,
                changed_from=span.text,
                changed_to=value,
                evidence=evidence,
            )
            slot.tiers[1 if evidence.found else 0].append(record)
        if slot.tiers[0] or slot.tiers[1]:
            slots.append(slot)
    rng.shuffle(slots)
    chosen: list[QueryRecord] = []
    for tier in (0, 1):
        queues = [list(slot.tiers[tier]) for slot in slots]
        while len(chosen) < max_negatives and any(queues):
            for queue in queues:
                if queue and len(chosen) < max_negatives:
                    chosen.append(queue.pop(0))
    return chosen
