"""Request builders: a page and a query in, the backend request for one stage out.

Every builder renders its stage's template (the shipped one, or the one given by name, path or
``PromptTemplate``) into a chat and, for generation stages, attaches the JSON schema of the stage's output
model. The builders never call a model.

How the page is shown:
- Positive generation and verification see the page as an image part (placed before the text, so the page
  comes first) when ``use_image`` is true and the backend takes images, else as its text.
- Verification puts the page before the question, and both wordings share the same system turn and page
  block: every question about one page, under either wording, starts with the same prefix, which a backend
  that keeps its prefix cache (llama.cpp here, vLLM's prefix caching) evaluates once per page.
- Negative generation and rephrasing are text-only, as in the paper: the LLM sees the positive query and
  its answer. Whether it also sees the page text is the caller's choice (``page_text`` or None); the
  pipeline's default should be *not* to show it. Measured with Qwen2.5-Coder-1.5B on real manual pages:
  shown the page (before or after the question, told not to ask for anything the page states), the model
  drifted into asking about the page's *other* facts ("What is the main benefit of xts over zoo?" for a page
  that says so) - false negatives; without the page, its variants kept the positive's subject and form and
  changed what is asked ("What is the recommended version of R for installing xts?"). A stronger model may
  use the page to avoid such questions; the templates then show it last, as a check only. Verification
  catches false negatives either way.

Page text is cut to ``max_page_chars`` characters (the head is kept, ending at a whitespace where one is
near) and the prompt says it was cut.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from docrerank.backends.messages import (
    ChatRequest,
    ChoiceRequest,
    ImagePart,
    Message,
    SamplingParams,
    TextPart,
)
from docrerank.errors import DocrerankError
from docrerank.pages.content import PageContent, PageLike
from docrerank.pages.record import Page
from docrerank.prompts.focus import DEFAULT_FOCUS_CHARS, PageView, focused_text
from docrerank.prompts.library import PromptTemplate, load_prompt
from docrerank.prompts.outputs import (
    ControlledNegatives,
    NegativeQueries,
    PositiveQueries,
    Rephrasing,
    output_example,
    output_schema,
)

__all__ = [
    "DEFAULT_MAX_PAGE_CHARS",
    "VERIFY_CHOICES",
    "VERIFY_TEMPLATES",
    "PageContent",  # moved to docrerank.pages.content: still importable from here
    "PageLike",
    "QueryLike",
    "controlled_negative_request",
    "cut_page_text",
    "freeform_negative_request",
    "positive_request",
    "rephrase_request",
    "rerank_request",
    "verify_requests",
]

DEFAULT_MAX_PAGE_CHARS = 4000  # ~1000-1400 tokens of English or code: fits a 4096-token context with room
VERIFY_CHOICES = ("yes", "no")
RERANK_CHOICES = ("True", "False")
VERIFY_TEMPLATES = ("verify_a", "verify_b")

TemplateLike = PromptTemplate | str | None


@runtime_checkable
class QueryLike(Protocol):
    """A query with its answer, such as ``docrerank.pipeline.records.QueryRecord`` (not imported here, so
    that the pipeline may import the prompts)."""

    text: str
    answer: str | None


def cut_page_text(text: str, max_chars: int = DEFAULT_MAX_PAGE_CHARS) -> tuple[str, bool]:
    """The head of ``text``, at most ``max_chars`` characters, and whether anything was cut.

    The cut falls at the last whitespace in the final 10% when there is one, so no word is split.
    """
    if max_chars < 1:
        raise ValueError(f"max_page_chars must be at least 1, got {max_chars}")
    text = text.strip()
    if len(text) <= max_chars:
        return text, False
    head = text[:max_chars]
    space = max(head.rfind(" "), head.rfind("\n"))
    if space >= max_chars * 0.9:
        head = head[:space]
    return head.rstrip(), True


def _page_content(page: PageLike) -> PageContent:
    if isinstance(page, PageContent):
        return page
    if isinstance(page, Page):
        return PageContent(text=page.text, page_id=page.page_id)
    if isinstance(page, str):
        return PageContent(text=page)
    raise TypeError(f"a page is a PageContent, a Page or its text, not {type(page).__name__}")


def _page_variables(
    page: PageContent, use_image: bool, max_page_chars: int, focus: tuple[str, int] | None = None
) -> dict[str, Any]:
    """The template variables that show the page; an error when there is nothing to show. ``focus``
    (query, characters) shows the page's passages nearest the query instead of its head (``prompts.focus``)."""
    if use_image and page.image is None:
        raise DocrerankError(
            f"page {page.page_id or '(no id)'}: use_image is set but the page has no image; build it with "
            "PageContent.from_page(page, store, image=True), or turn use_image off for a text-only backend"
        )
    focused = False
    source = page.text
    if focus is not None and not use_image and source.strip():
        source, focused = focused_text(focus[0], source, focus[1])
    text, truncated = cut_page_text(source, max_page_chars) if source.strip() else ("", False)
    if not use_image and not text:
        raise DocrerankError(
            f"page {page.page_id or '(no id)'} has no text and no image is used; ingest it with OCR "
            "(--ocr auto) or use a backend that takes images (use_image)"
        )
    return {
        "page_text": text,
        "page_truncated": truncated,
        "page_focused": focused,
        "max_page_chars": max_page_chars,
        "use_image": use_image,
    }


def _optional_page_variables(page_text: str | None, max_page_chars: int) -> dict[str, Any]:
    if page_text is None or not page_text.strip():
        return {"page_text": None, "page_truncated": False, "max_page_chars": max_page_chars, "use_image": False}
    text, truncated = cut_page_text(page_text, max_page_chars)
    return {"page_text": text, "page_truncated": truncated, "max_page_chars": max_page_chars, "use_image": False}


def _messages(template: PromptTemplate, variables: dict[str, Any], image: ImagePart | None = None) -> list[Message]:
    """The chat: the system turn (if the template has one), then the user turn, the page image first."""
    messages = []
    system = template.render_system(**variables)
    if system:
        messages.append(Message(role="system", content=system))
    user = template.render(**variables)
    content: str | list = [image, TextPart(text=user)] if image is not None else user
    messages.append(Message(role="user", content=content))
    return messages


def _positive_text(positive: str | QueryLike, answer: str | None) -> tuple[str, str | None]:
    if not isinstance(positive, str):
        return positive.text, answer if answer is not None else positive.answer
    return positive, answer


def _count(name: str, value: int) -> int:
    if not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value


def _sampling(sampling: SamplingParams | None, max_tokens: int) -> SamplingParams:
    return sampling if sampling is not None else SamplingParams(max_tokens=max_tokens)


def positive_request(
    page: PageLike,
    n: int,
    use_image: bool = False,
    template: TemplateLike = None,
    *,
    max_page_chars: int = DEFAULT_MAX_PAGE_CHARS,
    sampling: SamplingParams | None = None,
    id: str | None = None,
) -> ChatRequest:
    """Stage 1: ask for ``n`` questions that the page answers, with short answers (``PositiveQueries``)."""
    n = _count("n", n)
    template = load_prompt(template or "positive_generation")
    content = _page_content(page)
    variables = {
        **_page_variables(content, use_image, max_page_chars),
        "n": n,
        "output_example": output_example(PositiveQueries),
    }
    return ChatRequest(
        messages=_messages(template, variables, content.image if use_image else None),
        sampling=_sampling(sampling, 60 + 90 * n),
        json_schema=output_schema(PositiveQueries, count=n, min_count=n),
        id=id,
    )


def verify_requests(
    page: PageLike,
    query: str | QueryLike,
    templates: tuple[TemplateLike, ...] | list[TemplateLike] | None = None,
    use_image: bool = False,
    *,
    max_page_chars: int = DEFAULT_MAX_PAGE_CHARS,
    page_view: PageView = "whole",
    focus_chars: int = DEFAULT_FOCUS_CHARS,
    id: str | None = None,
) -> list[ChoiceRequest]:
    """Stages 2 and 4: one yes/no request per verification template (default ``verify_a``, ``verify_b``).

    The page comes before the question in every request: the whole page (its first ``max_page_chars``), or
    with ``page_view="focused"`` its heading and the passages nearest the question (``prompts.focus``).
    Request ids are ``{id}:{index}`` when ``id`` is given.
    """
    loaded = [load_prompt(t) for t in (templates or VERIFY_TEMPLATES)]
    if not loaded:
        raise ValueError("verification needs at least one template")
    content = _page_content(page)
    text = query if isinstance(query, str) else query.text
    focus = (text, focus_chars) if page_view == "focused" else None
    variables = {**_page_variables(content, use_image, max_page_chars, focus), "query": text}
    image = content.image if use_image else None
    return [
        ChoiceRequest(
            messages=_messages(template, variables, image),
            choices=VERIFY_CHOICES,
            id=f"{id}:{index}" if id is not None else None,
        )
        for index, template in enumerate(loaded)
    ]


def freeform_negative_request(
    page_text: str | None,
    positive: str | QueryLike,
    m: int,
    template: TemplateLike = None,
    *,
    answer: str | None = None,
    max_page_chars: int = DEFAULT_MAX_PAGE_CHARS,
    sampling: SamplingParams | None = None,
    id: str | None = None,
) -> ChatRequest:
    """Stage 3, free-form: ``m`` questions similar in topic and form to the positive, asking for other
    information (``NegativeQueries``). Text only; ``page_text=None`` leaves the page out of the prompt."""
    m = _count("m", m)
    query, answer = _positive_text(positive, answer)
    template = load_prompt(template or "negative_freeform")
    variables = {
        **_optional_page_variables(page_text, max_page_chars),
        "m": m,
        "query": query,
        "answer": answer,
        "output_example": output_example(NegativeQueries),
    }
    return ChatRequest(
        messages=_messages(template, variables),
        sampling=_sampling(sampling, 40 + 60 * m),
        json_schema=output_schema(NegativeQueries, count=m, min_count=m),
        id=id,
    )


def controlled_negative_request(
    positive: str | QueryLike,
    property_name: str,
    property_description: str,
    m: int,
    template: TemplateLike = None,
    *,
    property_example: str | None = None,
    allow_empty: bool = False,
    answer: str | None = None,
    page_text: str | None = None,
    max_page_chars: int = DEFAULT_MAX_PAGE_CHARS,
    sampling: SamplingParams | None = None,
    id: str | None = None,
) -> ChatRequest:
    """Stage 3, controlled: ``m`` edits of the positive that change exactly the named property
    (``ControlledNegatives``), each with the old and the new value.

    By default exactly ``m`` edits are asked for (a small model given the choice tends to stop after one);
    check each edit (``old_value`` found in the query, ``new_value`` different, the query changed) and
    drop the rest. With ``allow_empty`` the model may return fewer, none when the query has no such
    property."""
    m = _count("m", m)
    query, answer = _positive_text(positive, answer)
    template = load_prompt(template or "negative_controlled")
    variables = {
        **_optional_page_variables(page_text, max_page_chars),
        "m": m,
        "query": query,
        "answer": answer,
        "property_name": property_name,
        "property_description": property_description,
        "property_example": property_example,
        "allow_empty": allow_empty,
        "output_example": output_example(ControlledNegatives),
    }
    return ChatRequest(
        messages=_messages(template, variables),
        sampling=_sampling(sampling, 40 + 110 * m),
        json_schema=output_schema(ControlledNegatives, count=m, min_count=0 if allow_empty else m),
        id=id,
    )


def rephrase_request(
    positive: str | QueryLike,
    page_text: str | None = None,
    template: TemplateLike = None,
    *,
    answer: str | None = None,
    max_page_chars: int = DEFAULT_MAX_PAGE_CHARS,
    sampling: SamplingParams | None = None,
    id: str | None = None,
) -> ChatRequest:
    """A rephrased positive: the same question in other words, with few of the page's words (``Rephrasing``)."""
    query, answer = _positive_text(positive, answer)
    template = load_prompt(template or "rephrase_positive")
    variables = {
        **_optional_page_variables(page_text, max_page_chars),
        "query": query,
        "answer": answer,
        "output_example": output_example(Rephrasing),
    }
    return ChatRequest(
        messages=_messages(template, variables),
        sampling=_sampling(sampling, 120),
        json_schema=output_schema(Rephrasing),
        id=id,
    )


def rerank_request(
    page: PageLike,
    query: str,
    template: TemplateLike = "rerank_true_false",
    use_image: bool = False,
    *,
    max_page_chars: int = DEFAULT_MAX_PAGE_CHARS,
    page_view: PageView = "whole",
    focus_chars: int = DEFAULT_FOCUS_CHARS,
    id: str | None = None,
) -> ChoiceRequest:
    """A zero-shot reranking request: the page (whole, or focused on the query), then the query; the score is
    P(True) at the next token."""
    template = load_prompt(template or "rerank_true_false")
    content = _page_content(page)
    focus = (query, focus_chars) if page_view == "focused" else None
    variables = {**_page_variables(content, use_image, max_page_chars, focus), "query": query}
    image = content.image if use_image else None
    return ChoiceRequest(messages=_messages(template, variables, image), choices=RERANK_CHOICES, id=id)
