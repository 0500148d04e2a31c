"""Rule-based negatives: one edited span each, seeded, preferring values the page does not mention."""

from __future__ import annotations

import random
import re

import pytest

from docrerank.pages import IngestSettings, OcrMode, Page, PageStore, ingest
from docrerank.pipeline.evidence import PageText
from docrerank.pipeline.records import query_id
from docrerank.pipeline.rulebased import (
    ENTITY_PROPERTIES,
    RULE_PROPERTIES,
    EntityPool,
    find_spans,
    rule_based_negatives,
)
from tests.helpers import PDF3
from tests.pipeline import make_negative, make_positive, sample_texts

# Positives about the committed pages (vignette pages 1, 3 and 13), each with something to edit.
PAGE1, PAGE3, PAGE13 = 0, 1, 2
POSITIVES = [
    (PAGE13, "Was the structural break detected at observation #72, in December 1991?"),
    (PAGE13, "What does mefp() do with alpha=0.05 when monitoring with the ME test?"),
    (PAGE1, "Which tests on F statistics did Hansen propose in 1992 besides the CUSUM test?"),
    (PAGE3, "Which residuals does coint.res hold after lm() is fitted to USIncExp2?"),
    (PAGE13, "Did the moving estimates process shift around 1998 with bandwidth h = 0.5?"),
]


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> PageStore:
    out = tmp_path_factory.mktemp("pipeline-store") / "store"
    report = ingest([PDF3], out, IngestSettings(ocr=OcrMode.NEVER), workers=1)
    assert report.ok, report.errors
    return PageStore.open(out)


@pytest.fixture(scope="module")
def pages(store) -> list:
    return sorted(store, key=lambda p: p.page_index)


@pytest.fixture(scope="module")
def pool(store) -> EntityPool:
    return EntityPool.from_store(store)


def _edit_position(positive: str, negative: str, old: str, new: str) -> int | None:
    """Where replacing ``old`` by ``new`` once turns ``positive`` into ``negative`` (None: nowhere)."""
    for match in re.finditer(re.escape(old), positive):
        i = match.start()
        if positive[:i] + new + positive[i + len(old) :] == negative:
            return i
    return None


def test_pool_holds_the_store_entities_by_kind(pool, store):
    assert {"Hansen", "Zeileis", "Andrews", "Ploberger", "Kleiber"} <= set(pool.of_kind("name"))
    assert {"CUSUM", "MOSUM", "OLS", "ECM"} <= set(pool.of_kind("acronym"))
    assert pool.of_kind("package") == ["strucchange"]
    assert {"lm", "efp", "mefp", "window", "cbind"} <= set(pool.of_kind("function"))
    assert {"alpha", "start", "freq"} <= set(pool.of_kind("option"))
    assert {"coint.res", "diff.income", "USIncExp2"} <= set(pool.of_kind("identifier"))
    # sentence starts, section words, table labels and code are not names
    names = set(pool.of_kind("name"))
    assert not names & {"Since", "Here", "Thus", "Figure", "Section", "Intercept", "Time", "USIncExp", "Abstract"}
    # "plot" and "monitor" are also plain words on these pages: only a cue makes them function names
    assert {"efp", "mefp", "lm"} <= set(pool.code_words)
    assert not {"plot", "monitor"} & set(pool.code_words)
    # plain data: the same pool from the same pages, and through JSON
    assert EntityPool.from_store(store) == pool
    assert EntityPool.from_pages(iter(list(store))) == pool
    assert EntityPool.from_texts(sample_texts()).entities == pool.entities  # texts of no known document
    assert set(pool.documents) == {store[p].doc_id for p in store.page_ids}
    assert EntityPool.model_validate_json(pool.model_dump_json()) == pool
    assert pool.kind_of("mefp") == "function" and pool.kind_of("Hansen") == "name" and pool.kind_of("nope") is None


@pytest.mark.parametrize(("page", "text"), POSITIVES)
def test_each_negative_changes_exactly_its_recorded_span(pages, pool, page, text):
    positive = make_positive(text, pages[page].page_id)
    negatives = rule_based_negatives(positive, pages[page].text, pool, 12, random.Random(7))
    assert 6 <= len(negatives) <= 12
    assert len({n.text for n in negatives}) == len(negatives)
    for negative in negatives:
        assert negative.kind == "negative" and negative.parent_id == positive.query_id
        assert negative.page_id == positive.page_id
        assert negative.query_id == query_id(positive.page_id, "negative", negative.text, positive.query_id)
        assert negative.changed_from != negative.changed_to
        assert _edit_position(text, negative.text, negative.changed_from, negative.changed_to) is not None, negative
        rule = negative.generator.removeprefix("rule:")
        expected = RULE_PROPERTIES.get(rule) or set(ENTITY_PROPERTIES.values())
        assert negative.property in expected if rule == "entity" else negative.property == expected
        assert negative.evidence is not None and not negative.evidence.answers
        assert negative.evidence.value == negative.changed_to


def test_the_rules_named_in_the_issue_all_fire(pages, pool):
    seen: dict[str, set[str]] = {}
    for page, text in POSITIVES:
        positive = make_positive(text, pages[page].page_id)
        for negative in rule_based_negatives(positive, pages[page].text, pool, 40, random.Random(1)):
            seen.setdefault(negative.generator, set()).add(negative.property)
    assert seen["rule:year"] == {"date"}
    assert seen["rule:number"] == {"number"}
    assert seen["rule:entity"] == {"named entity", "option/function/command name"}
    inline = make_positive("Did the 3 days of tests in version 1.2.3 use 512 MB?")
    generators = {n.generator for n in rule_based_negatives(inline, "", pool, 40, random.Random(1))}
    assert {"rule:unit", "rule:version", "rule:number"} <= generators


def test_same_seed_same_negatives_other_seed_other_order(pages, pool):
    page, text = POSITIVES[2]
    positive = make_positive(text, pages[page].page_id)

    def run(seed: int) -> list[dict]:
        negatives = rule_based_negatives(positive, pages[page].text, pool, 8, random.Random(seed))
        return [n.model_dump() for n in negatives]

    assert run(3) == run(3)
    assert run(3) != run(4)
    # a fresh pool from the same texts gives the same negatives
    again = EntityPool.from_texts(sample_texts())
    same = rule_based_negatives(positive, pages[page].text, again, 8, random.Random(3))
    assert [n.model_dump() for n in same] == run(3)


def test_values_the_page_does_not_mention_come_first():
    filler = " ".join(["The weather was mild and the staff took their holidays as usual."] * 4)
    page = (
        f"The plant built 500 cars in 2021. {filler} Archive tables for 2018, 2019, 2020, 2022, 2023, 2024 "
        "and 2011 are kept in the annex."
    )
    positive = make_positive("How many cars did the plant build in 2021?")
    negatives = rule_based_negatives(positive, page, EntityPool(), 3, random.Random(0), rules=["year"])
    assert sorted(n.changed_to for n in negatives) == ["2016", "2026", "2031"]  # the only absent offsets
    assert all(n.evidence.found == [] for n in negatives)
    everything = rule_based_negatives(positive, page, EntityPool(), 20, random.Random(0), rules=["year"])
    on_page = [bool(n.evidence.found) for n in everything]
    assert on_page == sorted(on_page)  # every absent value before any mentioned one
    assert any(on_page)


def test_on_the_real_page_absent_years_lead(pages, pool):
    page, text = POSITIVES[0]
    positive = make_positive(text, pages[page].page_id)
    negatives = rule_based_negatives(positive, pages[page].text, pool, 30, random.Random(5), rules=["year"])
    index = PageText(pages[page].text)
    mentioned = [index.contains(n.changed_to) for n in negatives]
    assert mentioned == sorted(mentioned) and any(mentioned) and not all(mentioned)


def test_a_year_the_page_states_next_to_the_query_is_never_used():
    filler = " ".join(["The weather was mild and the staff took their holidays as usual."] * 4)
    page = f"Widget sales peaked in 2019, right after the launch. {filler} The company was founded in 2015."
    positive = make_positive("Did widget sales peak in 2020?")
    negatives = rule_based_negatives(positive, page, EntityPool(), 50, random.Random(0), rules=["year"])
    years = {n.changed_to for n in negatives}
    assert "2019" not in years  # the page would answer "did widget sales peak in 2019?"
    assert "2015" in years  # mentioned, but far from sales and peaks: usable, after the absent ones
    assert negatives[-1].changed_to == "2015"


def test_numbers_keep_their_format():
    positive = make_positive("Did 1,200 firms report a 15% margin and a ratio of 0.05 in the survey?")
    negatives = rule_based_negatives(positive, "", EntityPool(), 50, random.Random(0), rules=["number"])
    by_old: dict[str, list[str]] = {}
    for n in negatives:
        by_old.setdefault(n.changed_from, []).append(n.changed_to)
    assert set(by_old) == {"1,200", "15%", "0.05"}
    for new in by_old["1,200"]:
        assert re.fullmatch(r"\d{1,3}(,\d{3})*", new) and new != "1,200"
        assert int(new.replace(",", "")) >= 1000 or "," not in new
    for new in by_old["15%"]:
        assert re.fullmatch(r"\d+%", new) and 0 < int(new[:-1]) <= 100 and new != "15%"
    for new in by_old["0.05"]:
        assert re.fullmatch(r"\d\.\d\d", new) and new != "0.05"
    assert "12,000" in by_old["1,200"] and "1,300" in by_old["1,200"]


def test_units_move_one_or_two_sizes_within_their_kind():
    positive = make_positive("Does a request take 5 ms and the backup 1 day on 512 MB?")
    negatives = rule_based_negatives(positive, "", EntityPool(), 50, random.Random(0), rules=["unit"])
    changes = {(n.changed_from, n.changed_to) for n in negatives}
    assert changes == {
        ("5 ms", "5 µs"),
        ("5 ms", "5 s"),
        ("5 ms", "5 ns"),
        ("5 ms", "5 min"),
        ("1 day", "1 hour"),
        ("1 day", "1 week"),
        ("1 day", "1 minute"),
        ("1 day", "1 month"),
        ("512 MB", "512 KB"),
        ("512 MB", "512 GB"),
        ("512 MB", "512 B"),
        ("512 MB", "512 TB"),
    }
    assert {n.property for n in negatives} == {"unit"}


def test_percent_becomes_percentage_points_only_for_a_change():
    rise = make_positive("Did the margin rise by 5% in the last quarter?")
    level = make_positive("Is the margin 5% of sales?")
    changed = rule_based_negatives(rise, "", EntityPool(), 10, random.Random(0), rules=["unit"])
    assert [(n.changed_from, n.changed_to) for n in changed] == [("5%", "5 percentage points")]
    assert rule_based_negatives(level, "", EntityPool(), 10, random.Random(0), rules=["unit"]) == []


def test_versions_are_bumped():
    positive = make_positive("What changed in version 1.2.3 of the parser?")
    negatives = rule_based_negatives(positive, "", EntityPool(), 10, random.Random(0), rules=["version"])
    assert {n.changed_to for n in negatives} == {"1.2.4", "1.3.0", "2.0.0", "1.1.0", "1.2.2"}
    assert {n.property for n in negatives} == {"version"}


def test_entities_swap_with_the_same_kind_absent_from_the_page_first(pages, pool):
    page = pages[PAGE13]
    positive = make_positive("What does mefp() do when monitoring with the ME test?", page.page_id)
    negatives = rule_based_negatives(positive, page.text, pool, 40, random.Random(2), rules=["entity"])
    functions = [n for n in negatives if n.changed_from == "mefp()"]
    assert functions and all(n.property == "option/function/command name" for n in functions)
    names = [n.changed_to.removesuffix("()") for n in functions]
    assert all(n.changed_to.endswith("()") for n in functions)
    assert set(names) <= set(pool.of_kind("function")) - {"mefp"}
    index = PageText(page.text)
    on_page = [index.contains(name) for name in names]
    assert on_page == sorted(on_page) and not on_page[0]
    acronyms = [n for n in negatives if n.changed_from == "ME"]
    assert acronyms and {n.changed_to for n in acronyms} <= set(pool.of_kind("acronym")) - {"ME"}
    assert all(n.property == "named entity" for n in acronyms)
    # a name never becomes one already in the query, nor one that contains it
    hansen = make_positive("Did Hansen and Andrews propose tests?", page.page_id)
    swapped = rule_based_negatives(hansen, page.text, pool, 40, random.Random(2), rules=["entity"])
    assert swapped and all(n.changed_to not in ("Hansen", "Andrews") for n in swapped)


def test_entities_swap_to_their_own_document_first_and_to_others_only_when_several_pages_name_them():
    """lm() in a manual of model fitting becomes predict() or anova() of that manual, never wkI() that one page
    of another document names (an extraction artefact); layout(), which two other pages name, comes after the
    manual's own among the values the page does not mention (glm() is out: it contains the old name)."""
    manual = [
        Page.model_construct(page_id="m1", doc_id="manual", text="Fit with lm() or glm(); see predict()."),
        Page.model_construct(page_id="m2", doc_id="manual", text="The anova() table of an lm() fit."),
    ]
    other = [
        Page.model_construct(page_id="o1", doc_id="other", text="Draw with wkI() and then layout()."),
        Page.model_construct(page_id="o2", doc_id="other", text="A layout() call sets the panels."),
    ]
    pool = EntityPool.from_pages(manual + other)
    assert pool.swaps("function", "manual") == (["anova", "glm", "lm", "predict"], ["layout"])
    positive = make_positive("What does lm() return?", "m2")
    for seed in range(5):
        negatives = rule_based_negatives(positive, manual[1].text, pool, 10, random.Random(seed), document="manual")
        swaps = [n for n in negatives if n.changed_from == "lm()"]
        assert {n.changed_to for n in swaps} == {"predict()", "anova()", "layout()"}
        assert [n.changed_to for n in swaps if not n.evidence.found] == ["predict()", "layout()"]
    # with no document named, any entity of the pool may come (the pool of texts of no known document)
    anywhere = {
        n.changed_to
        for seed in range(5)
        for n in rule_based_negatives(positive, manual[1].text, pool, 10, random.Random(seed))
    }
    assert "wkI()" in anywhere


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("What happened in the 1990s?", []),
        ("What was decided on 2021-03-04?", []),
        ("What did Hansen (1992a) show?", [("entity", "Hansen"), ("year", "1992")]),
        ("Is the limit 2000 MB?", [("number", "2000 MB"), ("unit", "2000 MB")]),
        ("Which option sets e.g. the verbosity?", []),
        ("What is new in v1.2?", [("version", "1.2")]),
        ("Is the ratio 1.25 here?", [("number", "1.25")]),
        ("Does --verbose print 10 lines?", [("entity", "--verbose"), ("number", "10")]),
        ("How do I call install.packages(pkgs)?", [("entity", "install.packages")]),
        ("Is the 3rd item cheaper?", []),
    ],
)
def test_spans(query, expected):
    assert [(s.rule, s.text) for s in find_spans(query, "", EntityPool())] == expected


def test_bare_function_names_need_to_be_code_words_or_cued(pool):
    assert [s.text for s in find_spans("What does efp return?", "", pool)] == ["efp"]
    assert [s.text for s in find_spans("What does the plot show?", "", pool)] == []
    assert [s.text for s in find_spans("What does the plot function show?", "", pool)] == ["plot"]


def test_bad_calls_raise(pool):
    positive = make_positive("Did sales rise in 2021?")
    negative = make_negative(positive, "Did sales rise in 2022?")
    with pytest.raises(ValueError, match="is a negative"):
        rule_based_negatives(negative, "", pool, 3, random.Random(0))
    with pytest.raises(ValueError, match="unknown rules"):
        rule_based_negatives(positive, "", pool, 3, random.Random(0), rules=["colour"])
    assert rule_based_negatives(make_positive("What is this page about?"), "", pool, 3, random.Random(0)) == []


def test_the_store_pool_is_built_once_and_kept_beside_the_pages(store, pool, tmp_path):
    derived = store.root / "derived"
    kept_before = set(derived.glob("entity-pool-*.json")) if derived.is_dir() else set()
    first = EntityPool.for_store(store)
    files = set(derived.glob("entity-pool-*.json"))
    assert first == pool and len(files - kept_before) <= 1 and files
    (file,) = files
    file.write_text(first.model_copy(update={"code_words": ["kept"]}).model_dump_json())
    assert EntityPool.for_store(store).code_words == ["kept"]  # read, not rebuilt
    file.write_text("{damaged")
    assert EntityPool.for_store(store) == pool  # rebuilt
