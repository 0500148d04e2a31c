"""Property sets for controlled negatives: which property of a query the LLM is asked to change.

A controlled negative changes exactly one property of a positive query (the paper's finance set changes
the year, the company, a numeric value, the financial metric, the subject or the business segment), so that
the page no longer answers it. Each property has a name, a one-line description (both go into the prompt)
and an example edit (shown to the model as well).

Two sets are built in: ``finance`` (the paper's FinHNQue properties) and ``general`` (technical and general
documents). Users define their own in the config, a mapping of set name to a list of properties::

    property_sets:
      pharma:
        - {name: drug, description: "the drug or active ingredient", example: "aspirin -> ibuprofen"}
        - {name: dose, description: "the dose and its unit", example: "50 mg -> 200 mg", applies_when: "\\d"}

``applies_when`` (a regular expression) limits a property to the positives that have it: a model asked
to change the year of a question without one invents one.

A user set with the name of a built-in one replaces it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from docrerank.errors import DocrerankError

__all__ = [
    "BUILTIN_PROPERTY_SETS",
    "Property",
    "PropertySet",
    "PropertySetError",
    "get_property_set",
    "property_sets",
]


class PropertySetError(DocrerankError):
    """An unknown or malformed property set."""


class Property(BaseModel):
    """One property of a query that a controlled negative changes."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, description="short name, as the prompt and the records show it: 'year'")
    description: str = Field(min_length=1, description="one line saying what counts as this property")
    example: str = Field("", description="an example edit: 'revenue in 2022 -> revenue in 2024'")
    applies_when: str = Field(
        "",
        description="a regular expression (case-insensitive): the property is asked for only of positives it "
        "matches ('\\d' for numbers); empty: of every positive",
    )

    @field_validator("name", "description", "example", mode="before")
    @classmethod
    def _one_line(cls, value: Any) -> Any:
        return " ".join(value.split()) if isinstance(value, str) else value

    @field_validator("applies_when")
    @classmethod
    def _a_pattern(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"applies_when {value!r} is not a regular expression ({exc})") from None
        return value

    def applies_to(self, query: str) -> bool:
        """Does ``query`` have this property to change? (Asking a model to change a year in a question
        without one makes it invent one: measured on the 1.5B, most such edits fail the edit check.)"""
        return not self.applies_when or re.search(self.applies_when, query, flags=re.IGNORECASE) is not None


class PropertySet(BaseModel):
    """A named list of properties; names are unique within a set."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1)
    properties: tuple[Property, ...] = Field(min_length=1)

    @field_validator("properties")
    @classmethod
    def _unique_names(cls, properties: tuple[Property, ...]) -> tuple[Property, ...]:
        seen: set[str] = set()
        for prop in properties:
            if prop.name in seen:
                raise ValueError(f"property {prop.name!r} appears twice; give each property a distinct name")
            seen.add(prop.name)
        return properties

    @property
    def names(self) -> list[str]:
        return [p.name for p in self.properties]

    def get(self, name: str) -> Property:
        """The property called ``name``; a clear error listing the set's properties otherwise."""
        for prop in self.properties:
            if prop.name == name:
                return prop
        raise PropertySetError(f"property set {self.name!r} has no property {name!r}; it has: {', '.join(self.names)}")

    def subset(self, names: Iterable[str]) -> PropertySet:
        """The same set restricted to ``names`` (in the order given)."""
        return PropertySet(name=self.name, properties=tuple(self.get(n) for n in names))


def _set(name: str, rows: list[tuple[str, str, str]], applies: dict[str, str]) -> PropertySet:
    return PropertySet(
        name=name,
        properties=tuple(
            Property(name=n, description=d, example=e, applies_when=applies.get(n, "")) for n, d, e in rows
        ),
    )


# When a property is there to change: numbers, versions, dates and units have a visible form; names,
# functions, metrics and the quantity asked are in every question, so those are always asked for.
_NUMBER = r"\d"
_YEAR_OR_DATE = (
    r"\b(1[5-9]\d\d|20\d\d)\b|\b(jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)[a-z]*\.?\s+\d|"
    r"\b\d{1,2}[/.-]\d{1,2}[/.-]\d{2,4}\b|\b(fiscal|quarter|q[1-4]\b|century|decade)"
)
_VERSION = r"\bv(ersion)?\s*\.?\s*\d|\b\d+\.\d+(\.\d+)+\b|\brelease\s+\d"
_UNIT = (
    r"[$€£¥%]|\b(percent|per ?cent|[kmgt]i?b|bytes?|bits?|(milli|micro|nano)?seconds?|ms|minutes?|hours?|days?|"
    r"weeks?|months?|years?|[mck]?m|km|inch(es)?|feet|foot|miles?|[mk]?g|grams?|kilograms?|tons?|litres?|liters?|"
    r"ml|hz|khz|mhz|ghz|dpi|pixels?|px|points?|pt|degrees?|°[cf]?|volts?|watts?|amps?|dollars?|euros?|pounds?|"
    r"yen|cents?)\b"
)


FINANCE = _set(
    "finance",
    [
        ("year", "the year or fiscal period the question is about", "revenue in 2022 -> revenue in 2024"),
        ("company", "the company or organisation the question is about", "Apple's net income -> IBM's net income"),
        (
            "numeric value",
            "a number in the question: a price, an amount, a percentage or a threshold",
            "shares priced above $50 -> shares priced above $75",
        ),
        (
            "financial metric",
            "the financial measure asked for, such as revenue, sales, operating income or acquisitions",
            "total revenue in 2021 -> total acquisitions in 2021",
        ),
        (
            "subject",
            "the financial instrument or topic, such as dividends, stocks, options or bonds",
            "dividends paid per share -> options granted per share",
        ),
        (
            "business segment",
            "the business segment or division, such as cloud, software or manufacturing",
            "cloud segment revenue -> manufacturing segment revenue",
        ),
    ],
    {"year": _YEAR_OR_DATE, "numeric value": _NUMBER},
)

GENERAL = _set(
    "general",
    [
        (
            "number",
            "a number in the question: a count, a size, a limit or a measured value",
            "at most 8 threads -> at most 32 threads",
        ),
        ("version", "a software, standard or model version", "supported in version 2.4 -> supported in version 3.1"),
        ("date", "a date, year or time period", "released in March 2019 -> released in October 2021"),
        (
            "named entity",
            "a named product, organisation, person, place, package or data set",
            "the lme4 package -> the nlme package",
        ),
        (
            "option or function",
            "the name of an option, a function, a command or a parameter",
            "the --verbose option -> the --quiet option",
        ),
        ("unit", "a unit of measurement or a currency", "the size in megabytes -> the size in gigabytes"),
        (
            "quantity asked",
            "what quantity or attribute the question asks for, about the same subject",
            "the default value of tol -> the allowed range of tol",
        ),
    ],
    {"number": _NUMBER, "version": _VERSION, "date": _YEAR_OR_DATE, "unit": _UNIT},
)

BUILTIN_PROPERTY_SETS: dict[str, PropertySet] = {s.name: s for s in (FINANCE, GENERAL)}

UserSets = Mapping[str, Iterable[Mapping[str, Any] | Property] | PropertySet]


def _user_set(name: str, value: Any) -> PropertySet:
    if isinstance(value, PropertySet):
        return value if value.name == name else value.model_copy(update={"name": name})
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        raise PropertySetError(
            f"property set {name!r}: expected a list of properties ({{name, description, example}}), "
            f"got {type(value).__name__}"
        )
    fix = "Each property needs a name and a one-line description, and may have an example edit"
    props = []
    for index, item in enumerate(value):
        try:
            props.append(item if isinstance(item, Property) else Property.model_validate(item))
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or 'item'}: {e['msg']}" for e in exc.errors()[:5]
            )
            raise PropertySetError(f"property set {name!r}, property {index}: {problems}. {fix}") from None
    try:
        return PropertySet(name=name, properties=tuple(props))
    except ValidationError as exc:
        problems = "; ".join(e["msg"] for e in exc.errors()[:5])
        raise PropertySetError(f"property set {name!r} is malformed: {problems}. {fix}") from None


def property_sets(user_sets: UserSets | None = None) -> dict[str, PropertySet]:
    """The built-in sets and the user's, by name; a user set named like a built-in one replaces it."""
    merged = dict(BUILTIN_PROPERTY_SETS)
    for name, value in (user_sets or {}).items():
        merged[name] = _user_set(name, value)
    return merged


def get_property_set(name: str, user_sets: UserSets | None = None) -> PropertySet:
    """The property set called ``name``, from the user's sets first, then the built-in ones.

    Raises:
        PropertySetError: no set has that name (the message lists the known ones), or a user set is malformed.
    """
    if user_sets and name in user_sets:
        return _user_set(name, user_sets[name])
    if name in BUILTIN_PROPERTY_SETS:
        return BUILTIN_PROPERTY_SETS[name]
    known = sorted(set(BUILTIN_PROPERTY_SETS) | set(user_sets or {}))
    raise PropertySetError(
        f"unknown property set {name!r}; known sets: {', '.join(known)}. Define your own under "
        "property_sets in the config (a name and a list of {name, description, example})"
    )
