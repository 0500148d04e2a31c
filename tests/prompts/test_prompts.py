"""Prompt templates, output models and request builders (no model is called)."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from docrerank.backends.messages import ChatRequest, ChoiceRequest, Generation, ImagePart, TextPart
from docrerank.pages.content import PageContent
from docrerank.pages.record import Page, TextSource
from docrerank.pipeline.records import QueryRecord
from docrerank.prompts import (
    VERIFY_CHOICES,
    ControlledNegatives,
    NegativeQueries,
    OutputError,
    PositiveQueries,
    PromptError,
    PromptTemplate,
    Rephrasing,
    controlled_negative_request,
    cut_page_text,
    freeform_negative_request,
    load_prompt,
    output_example,
    output_schema,
    parse_output,
    positive_request,
    prompt_names,
    rephrase_request,
    verify_requests,
)

SHIPPED = {
    "positive_generation",
    "verify_a",
    "verify_b",
    "verify_shots",
    "negative_freeform",
    "negative_controlled",
    "rephrase_positive",
    "rerank_true_false",
}
PAGE_TEXT = (
    "Table 2: Revenue by segment (million USD)\n"
    "Segment 2021 2022\nCloud 310 405\nSoftware 120 133\n"
    "Cloud revenue grew by 31% in 2022, driven by new data centres."
)
QUERY = "What was Acme Corp's cloud revenue in 2022?"


def _image() -> ImagePart:
    return ImagePart.from_pil(Image.new("RGB", (8, 10), "white"))


def _user(request: ChatRequest | ChoiceRequest):
    return request.messages[-1]


# -- templates --------------------------------------------------------------------------------------------


def test_shipped_names():
    assert set(prompt_names()) == SHIPPED
    assert not any(name.startswith("_") for name in prompt_names())


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_every_shipped_template_loads(name):
    template = load_prompt(name)
    assert isinstance(template, PromptTemplate)
    assert template.name == name
    assert template.has_system
    assert len(template.fingerprint) == 64
    assert load_prompt(name) is template  # shipped templates are parsed once


def test_missing_name_lists_shipped_names():
    with pytest.raises(PromptError) as caught:
        load_prompt("verify_c")
    message = str(caught.value)
    for name in SHIPPED:
        assert name in message
    with pytest.raises(PromptError, match="no shipped prompt template"):
        load_prompt("_page")  # partials are not prompts


def test_missing_file_is_an_error(tmp_path):
    with pytest.raises(PromptError, match="does not exist"):
        load_prompt(tmp_path / "nope.j2")
    with pytest.raises(PromptError, match="does not exist"):
        load_prompt("prompts/nope.j2")


def test_syntax_error_names_the_file(tmp_path):
    path = tmp_path / "broken.j2"
    path.write_text("Question: {{ query }\n")
    with pytest.raises(PromptError, match="broken.j2"):
        load_prompt(path)


def test_system_block_without_user_block_is_an_error(tmp_path):
    path = tmp_path / "only_system.j2"
    path.write_text("{% block system %}You judge.{% endblock %}Question: {{ query }}")
    with pytest.raises(PromptError, match="no user block"):
        load_prompt(path)


def test_undefined_variable_is_named():
    with pytest.raises(PromptError, match="query") as caught:
        load_prompt("verify_a").render(page_text="x", page_truncated=False, max_page_chars=10, use_image=False)
    assert "Variables given" in str(caught.value)


def test_plain_file_is_a_user_turn(tmp_path):
    path = tmp_path / "mine.j2"
    path.write_text("Q: {{ query }}\n")
    template = load_prompt(str(path))
    assert template.name == "mine"
    assert template.render(query="why?") == "Q: why?"
    assert template.render_system(query="why?") is None
    assert template.variables == {"query"}


def test_override_by_path_in_a_builder(tmp_path):
    path = tmp_path / "verify_strict.j2"
    path.write_text(
        "{% block system %}Be strict.{% endblock %}"
        "{% block user %}{% include '_page.j2' %}\nQ: {{ query }} yes or no?{% endblock %}"
    )
    requests = verify_requests(PAGE_TEXT, QUERY, templates=[str(path), "verify_b"])
    assert len(requests) == 2
    assert requests[0].messages[0].text == "Be strict."
    assert "Q: " + QUERY in _user(requests[0]).text
    assert PAGE_TEXT.splitlines()[0] in _user(requests[0]).text  # the shipped partial was found
    assert "A user searched for" in _user(requests[1]).text


def test_partial_next_to_an_override_wins_and_changes_the_fingerprint(tmp_path):
    path = tmp_path / "mine.j2"
    path.write_text("{% include '_page.j2' %}\n\nQ: {{ query }}")  # trim_blocks eats the tag's newline
    before = load_prompt(path)
    (tmp_path / "_page.j2").write_text("PAGE: {{ page_text }}")
    after = load_prompt(path)
    variables = {"page_text": "abc", "page_truncated": False, "max_page_chars": 10, "use_image": False, "query": "q"}
    assert after.render(**variables) == "PAGE: abc\nQ: q"
    assert "<page>" in before.render(**variables)
    assert before.fingerprint != after.fingerprint  # same template text, different partial


def test_fingerprint_follows_the_text(tmp_path):
    one, two = tmp_path / "one.j2", tmp_path / "two.j2"
    one.write_text("Q: {{ query }}")
    two.write_text("Q: {{ query }}")
    assert load_prompt(one).fingerprint == load_prompt(two).fingerprint
    two.write_text("Question: {{ query }}")
    assert load_prompt(one).fingerprint != load_prompt(two).fingerprint
    assert load_prompt("verify_a").fingerprint != load_prompt("verify_b").fingerprint


def test_fingerprint_is_the_sha256_of_a_plain_template(tmp_path):
    import hashlib

    path = tmp_path / "plain.j2"
    path.write_text("Q: {{ query }}", encoding="utf-8")
    assert load_prompt(path).fingerprint == hashlib.sha256(b"Q: {{ query }}").hexdigest()


def test_missing_partial_is_an_error(tmp_path):
    path = tmp_path / "mine.j2"
    path.write_text("{% include '_nothere.j2' %}")
    with pytest.raises(PromptError, match="_nothere.j2.*shipped partials: _page.j2"):
        load_prompt(path)


def test_loading_a_template_object_returns_it():
    template = load_prompt("verify_a")
    assert load_prompt(template) is template


# -- page text ------------------------------------------------------------------------------------------


def test_cut_page_text_keeps_the_head():
    text = "word " * 100
    cut, truncated = cut_page_text(text, 52)
    assert truncated
    assert text.startswith(cut)
    assert len(cut) <= 52
    assert not cut.endswith("wor")  # cut at a space, no split word
    assert cut_page_text("short", 100) == ("short", False)
    with pytest.raises(ValueError):
        cut_page_text("x", 0)


def test_truncation_is_said_in_the_prompt():
    long_page = "The cloud segment grew. " * 400
    request = positive_request(long_page, 2, max_page_chars=200)
    text = _user(request).text
    assert "only its first 200 characters" in text
    assert long_page[:150] in text
    assert "only its first" not in _user(positive_request(PAGE_TEXT, 2)).text


def test_a_page_without_text_and_image_is_refused():
    with pytest.raises(ValueError, match="no text"):
        positive_request(PageContent(text="  ", page_id="p1"), 2)


# -- request builders -----------------------------------------------------------------------------------


def test_positive_request_text_only():
    request = positive_request(PAGE_TEXT, 3)
    assert [m.role for m in request.messages] == ["system", "user"]
    user = _user(request)
    assert isinstance(user.content, str)
    assert PAGE_TEXT in user.text
    assert "Write 3 different questions" in user.text
    assert "table" in user.text
    assert not request.has_images
    assert request.json_schema == output_schema(PositiveQueries, count=3, min_count=3)


def test_positive_request_with_image_puts_the_image_first():
    page = PageContent(text=PAGE_TEXT, image=_image(), page_id="p1")
    request = positive_request(page, 2, use_image=True)
    parts = _user(request).parts
    assert isinstance(parts[0], ImagePart)
    assert isinstance(parts[1], TextPart)
    assert "image above" in parts[1].text
    assert PAGE_TEXT not in parts[1].text  # the image stands for the page
    assert request.has_images
    text_only = positive_request(page, 2, use_image=False)
    assert not text_only.has_images


def test_use_image_without_an_image_is_refused():
    with pytest.raises(ValueError, match="no image"):
        positive_request(PAGE_TEXT, 2, use_image=True)
    with pytest.raises(ValueError, match="no image"):
        verify_requests(PAGE_TEXT, QUERY, use_image=True)


def test_page_record_is_accepted():
    page = Page(
        page_id="a" * 32,
        doc_id="b" * 16,
        source_path="/x.pdf",
        page_index=0,
        width=10,
        height=10,
        text=PAGE_TEXT,
        text_source=TextSource.TEXT_LAYER,
        image_path="images/a.png",
    )
    assert PAGE_TEXT in _user(positive_request(page, 1)).text
    assert PageContent.from_page(page).text == PAGE_TEXT
    with pytest.raises(ValueError, match="pass the store"):
        PageContent.from_page(page, image=True)


def test_verify_requests_page_before_question():
    requests = verify_requests(PAGE_TEXT, QUERY, id="q1")
    assert len(requests) == 2
    assert [r.id for r in requests] == ["q1:0", "q1:1"]
    for request in requests:
        assert isinstance(request, ChoiceRequest)
        assert request.choices == VERIFY_CHOICES == ("yes", "no")
        text = _user(request).text
        assert text.index(PAGE_TEXT) < text.index(QUERY)
        assert text.rstrip().endswith("Answer yes or no.")
    assert _user(requests[0]).text != _user(requests[1]).text  # two wordings


def _prefix(a: str, b: str) -> str:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return a[:n]


def test_verify_prompts_share_the_page_prefix():
    """Every question about a page, under both wordings, starts with the same system turn and page block."""
    rendered = [
        (r.messages[0].text, _user(r).text)
        for query in (QUERY, "Which segment shrank in 2021?")
        for r in verify_requests(PAGE_TEXT, query)
    ]
    systems = {system for system, _ in rendered}
    assert len(systems) == 1
    users = [user for _, user in rendered]
    common = users[0]
    for user in users[1:]:
        common = _prefix(common, user)
    assert PAGE_TEXT in common
    assert common.rstrip().endswith("</page>")


def test_verify_with_image():
    page = PageContent(text=PAGE_TEXT, image=_image())
    for request in verify_requests(page, QUERY, use_image=True):
        parts = _user(request).parts
        assert isinstance(parts[0], ImagePart)
        assert QUERY in parts[1].text


def test_verify_accepts_a_query_record():
    record = QueryRecord(query_id="x", page_id="p", kind="positive", text=QUERY, generator="given")
    assert QUERY in _user(verify_requests(PAGE_TEXT, record)[0]).text


def test_freeform_negative_with_and_without_page():
    record = QueryRecord(
        query_id="x", page_id="p", kind="positive", text=QUERY, answer="405 million USD", generator="given"
    )
    without = freeform_negative_request(None, record, 4)
    text = _user(without).text
    assert QUERY in text and "405 million USD" in text
    assert "<page>" not in text
    assert "Write 4 new questions" in text
    assert without.json_schema == output_schema(NegativeQueries, count=4, min_count=4)
    with_page = _user(freeform_negative_request(PAGE_TEXT, QUERY, 1)).text
    assert PAGE_TEXT in with_page
    assert "Answer:" not in with_page  # no answer given
    assert "Write 1 new question " in with_page
    assert with_page.index(QUERY) < with_page.index(PAGE_TEXT)  # the page is shown last, as a check


def test_controlled_negative_request():
    request = controlled_negative_request(
        QUERY, "year", "the year the question is about", 3, property_example="in 2022 -> in 2024"
    )
    text = _user(request).text
    assert "Property to change: year (the year the question is about)." in text
    assert "in 2022 -> in 2024" in text
    assert "empty list" not in text
    schema = request.json_schema
    assert schema["properties"]["queries"]["minItems"] == 3
    assert schema["properties"]["queries"]["maxItems"] == 3
    plain = controlled_negative_request(QUERY, "year", "the year", 2, allow_empty=True, page_text=PAGE_TEXT)
    text = _user(plain).text
    assert "Example of such an edit" not in text
    assert "empty list" in text
    assert PAGE_TEXT in text
    assert plain.json_schema["properties"]["queries"]["minItems"] == 0


def test_rephrase_request():
    request = rephrase_request(QUERY)
    text = _user(request).text
    assert QUERY in text and "<page>" not in text
    assert request.json_schema == Rephrasing.model_json_schema()
    assert PAGE_TEXT in _user(rephrase_request(QUERY, PAGE_TEXT, answer="405")).text


def test_counts_must_be_positive():
    with pytest.raises(ValueError):
        positive_request(PAGE_TEXT, 0)
    with pytest.raises(ValueError):
        freeform_negative_request(None, QUERY, 0)


def test_requests_are_deterministic():
    """The same inputs give the same request (the response cache and the fingerprints rely on it)."""
    assert positive_request(PAGE_TEXT, 2).cache_payload() == positive_request(PAGE_TEXT, 2).cache_payload()


# -- output models ----------------------------------------------------------------------------------------


def test_schemas_come_from_the_models():
    for model in (PositiveQueries, NegativeQueries, ControlledNegatives, Rephrasing):
        assert output_schema(model) == model.model_json_schema()
    schema = output_schema(PositiveQueries, count=5)
    queries = schema["properties"]["queries"]
    assert (queries["minItems"], queries["maxItems"]) == (1, 5)
    item = schema["$defs"][queries["items"]["$ref"].split("/")[-1]]
    assert list(item["properties"]) == ["query", "answer"]
    assert item["required"] == ["query", "answer"]
    controlled_item = output_schema(ControlledNegatives)["$defs"]["ControlledNegative"]
    assert list(controlled_item["properties"]) == ["property", "old_value", "new_value", "query"]
    with pytest.raises(ValueError):
        output_schema(PositiveQueries, count=0)


def test_output_example_follows_the_fields():
    example = json.loads(output_example(ControlledNegatives))
    assert list(example) == ["queries"]
    assert list(example["queries"][0]) == ["property", "old_value", "new_value", "query"]
    assert list(json.loads(output_example(Rephrasing))) == ["query"]


def test_parse_output():
    good = Generation(text='{"queries": [{"query": " Q1? ", "answer": "A"}]}')
    parsed = parse_output(PositiveQueries, good)
    assert parsed.queries[0].query == "Q1?"
    from_parsed = Generation(text="ignored", parsed={"query": "R?"})
    assert parse_output(Rephrasing, from_parsed).query == "R?"
    bare = Generation(text='[{"query": "N1?"}, {"query": "N2?"}]')
    assert [q.query for q in parse_output(NegativeQueries, bare).queries] == ["N1?", "N2?"]
    fenced = Generation(text='Here:\n```json\n{"queries": [{"query": "N?"}]}\n```')
    assert parse_output(NegativeQueries, fenced).queries[0].query == "N?"


@pytest.mark.parametrize(
    ("generation", "reason"),
    [
        (Generation(text="no json here"), "no JSON"),
        (Generation(text='{"queries": [{"query": ""}]}'), "queries.0.query"),
        (Generation(text='{"queries": [{"answer": "x"}]}'), "queries.0.query"),
        (Generation(text="", error="timeout"), "generation failed: timeout"),
    ],
)
def test_parse_output_failures_keep_reason_and_raw(generation, reason):
    with pytest.raises(OutputError) as caught:
        parse_output(NegativeQueries, generation)
    assert reason in caught.value.reason
    assert caught.value.raw == generation.text


def test_verify_shots_keeps_its_worked_examples_in_a_system_turn_shared_by_every_page():
    """The examples come before the page, in the same system turn for every request, so a backend that
    keeps its prefix cache evaluates them once per run; the page then comes before the question."""
    one = verify_requests(PAGE_TEXT, QUERY, templates=["verify_shots"])[0]
    other = verify_requests("Another page: the xts index is POSIXct.", "What class is the index?", ["verify_shots"])[0]
    assert one.messages[0].role == "system" and one.messages[0].text == other.messages[0].text
    assert "Examples." in one.messages[0].text and "Answer: no" in one.messages[0].text
    user = _user(one).text
    assert user.index("Cloud revenue grew") < user.index(QUERY)


def test_rerank_request_shows_the_page_then_the_query_and_asks_true_or_false():
    from docrerank.prompts.requests import rerank_request

    request = rerank_request(PAGE_TEXT, QUERY)
    text = request.messages[-1].content
    assert request.choices == ("True", "False")
    assert text.index("Cloud revenue grew") < text.index(QUERY) and "True or False" in text
