"""Property sets for controlled negatives: built-in sets, user sets from config, errors."""

from __future__ import annotations

import pytest

from docrerank.errors import DocrerankError
from docrerank.pipeline.properties import (
    BUILTIN_PROPERTY_SETS,
    Property,
    PropertySet,
    PropertySetError,
    get_property_set,
    property_sets,
)

USER = {
    "pharma": [
        {"name": "drug", "description": "the drug or active ingredient", "example": "aspirin -> ibuprofen"},
        {"name": "dose", "description": "the dose\n and its unit"},
    ]
}


def test_builtin_sets():
    assert set(BUILTIN_PROPERTY_SETS) == {"finance", "general"}
    finance = get_property_set("finance")
    assert finance.names == ["year", "company", "numeric value", "financial metric", "subject", "business segment"]
    general = get_property_set("general")
    for name in ("number", "version", "date", "named entity", "unit", "quantity asked"):
        assert name in general.names
    assert any("option" in name for name in general.names)
    for prop_set in BUILTIN_PROPERTY_SETS.values():
        for prop in prop_set.properties:
            assert prop.description and "\n" not in prop.description
            assert "->" in prop.example  # an example edit: old -> new


def test_user_sets_merge_with_the_builtin_ones():
    merged = property_sets(USER)
    assert set(merged) == {"finance", "general", "pharma"}
    pharma = get_property_set("pharma", USER)
    assert isinstance(pharma, PropertySet)
    assert pharma.names == ["drug", "dose"]
    assert pharma.get("dose").description == "the dose and its unit"  # one line
    assert pharma.get("dose").example == ""
    assert get_property_set("finance", USER) is BUILTIN_PROPERTY_SETS["finance"]


def test_a_user_set_replaces_a_builtin_of_the_same_name():
    user = {"finance": [{"name": "ticker", "description": "the stock ticker", "example": "AAPL -> IBM"}]}
    assert get_property_set("finance", user).names == ["ticker"]
    assert property_sets(user)["finance"].names == ["ticker"]
    assert property_sets()["finance"].names[0] == "year"  # the built-in is untouched


def test_user_sets_accept_models():
    prop = Property(name="drug", description="the drug")
    assert get_property_set("x", {"x": [prop]}).names == ["drug"]
    prepared = PropertySet(name="other", properties=(prop,))
    assert get_property_set("x", {"x": prepared}).name == "x"


def test_unknown_set_lists_the_known_ones():
    with pytest.raises(PropertySetError) as caught:
        get_property_set("legal", USER)
    message = str(caught.value)
    assert "'legal'" in message
    for name in ("finance", "general", "pharma"):
        assert name in message
    assert isinstance(caught.value, DocrerankError) and isinstance(caught.value, ValueError)


@pytest.mark.parametrize(
    ("value", "match"),
    [
        ([{"name": "drug"}], "property 0: description"),
        ([{"name": " ", "description": "x"}], "property 0: name"),
        ([{"name": "a", "description": "x", "colour": "red"}], "property 0: colour"),
        ([], "at least 1"),
        ([{"name": "a", "description": "x"}, {"name": "a", "description": "y"}], "appears twice"),
        ("drug, dose", "expected a list"),
    ],
)
def test_malformed_user_sets(value, match):
    with pytest.raises(PropertySetError, match=match):
        get_property_set("bad", {"bad": value})


def test_get_and_subset():
    general = get_property_set("general")
    assert general.get("version").name == "version"
    with pytest.raises(PropertySetError, match="has no property 'colour'; it has: number"):
        general.get("colour")
    subset = general.subset(["date", "number"])
    assert subset.names == ["date", "number"]
    assert subset.name == "general"


@pytest.mark.parametrize(
    ("name", "applies", "does_not"),
    [
        ("number", "How many threads at most, 8?", "What does the function do?"),
        ("version", "What changed in version 2.4?", "What changed in the 1990s after 2 years?"),
        ("date", "What happened in March 2019?", "What does lm() return?"),
        ("unit", "What is the size in MB?", "Which package fits the model?"),
        ("named entity", "Which package fits the model?", None),
    ],
)
def test_a_property_is_asked_for_only_where_the_positive_has_it(name, applies, does_not):
    prop = get_property_set("general").get(name)
    assert prop.applies_to(applies)
    if does_not is not None:
        assert not prop.applies_to(does_not)


def test_applies_when_must_be_a_regular_expression():
    with pytest.raises(PropertySetError, match="not a regular expression"):
        property_sets({"mine": [{"name": "dose", "description": "the dose", "applies_when": "(["}]})
