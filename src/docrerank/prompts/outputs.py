"""What each generation prompt must return: pydantic models, whose JSON schemas go into the requests.

The schemas are generated from these models (``output_schema``), never written by hand, and kept flat:
one object with one list of small objects of strings. Small models follow such schemas well, and
llama.cpp turns them into a grammar that forces well-formed output while decoding. The short JSON example
shown in the prompts (``output_example``) is generated from the same models, so prompt and schema cannot
drift apart.

A model output that does not validate is not dropped silently: ``parse_output`` raises ``OutputError``
with the reason and the raw text, for the pipeline to record as a rejection.
"""

from __future__ import annotations

import functools
import json
from typing import Annotated, Any, ClassVar, TypeVar

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, create_model

from docrerank.backends.messages import Generation
from docrerank.errors import DocrerankError

__all__ = [
    "ControlledNegative",
    "ControlledNegatives",
    "NegativeQueries",
    "NegativeQuery",
    "OutputError",
    "PositiveQueries",
    "PositiveQuery",
    "Rephrasing",
    "output_example",
    "output_schema",
    "parse_output",
]

M = TypeVar("M", bound=BaseModel)

# Bounds that keep a small model from running on (greedy decoding can repeat itself until max_tokens).
QUERY_MAX_CHARS = 300
ANSWER_MAX_CHARS = 200
VALUE_MAX_CHARS = 100

Query = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=QUERY_MAX_CHARS)]
Answer = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=ANSWER_MAX_CHARS)]
Value = Annotated[str, StringConstraints(strip_whitespace=True, max_length=VALUE_MAX_CHARS)]


class _Output(BaseModel):
    # extra="ignore": a model that adds a field of its own has still answered; the schema says what we read.
    model_config = ConfigDict(extra="ignore", frozen=True)

    # The name of the list field whose length a request may bound (``output_schema(model, count=...)``).
    list_field: ClassVar[str | None] = None


class PositiveQuery(_Output):
    query: Query = Field(description="a question the page answers")
    answer: Answer = Field(description="its short answer, from the page")


class PositiveQueries(_Output):
    """Stage 1: questions that the page answers, each with its short answer."""

    list_field: ClassVar[str | None] = "queries"
    queries: list[PositiveQuery]


class NegativeQuery(_Output):
    query: Query = Field(description="a similar question that the page cannot answer")


class NegativeQueries(_Output):
    """Stage 3 (free-form): questions similar in topic and form to the positive, asking for other information."""

    list_field: ClassVar[str | None] = "queries"
    queries: list[NegativeQuery]


class ControlledNegative(_Output):
    # The edit comes before the edited question: a small model that has first written down what it will
    # change (grammar-constrained, in this order) then writes a question that makes that change.
    property: Value = Field(description="the property changed")
    old_value: Value = Field(description="its value in the original question")
    new_value: Value = Field(description="its new value")
    query: Query = Field(description="the question with one property changed")


class ControlledNegatives(_Output):
    """Stage 3 (controlled): the positive with exactly one named property changed, and what was changed."""

    list_field: ClassVar[str | None] = "queries"
    queries: list[ControlledNegative]


class Rephrasing(_Output):
    """A rephrased positive: the same question in other words."""

    query: Query = Field(description="the question in other words")


def output_schema(model: type[BaseModel], count: int | None = None, min_count: int = 1) -> dict[str, Any]:
    """The JSON schema of ``model``, for ``ChatRequest.json_schema``.

    With ``count``, the model's list field is bounded to ``min_count..count`` items (a subclass with the
    bound is generated, so the schema still comes from pydantic): a grammar-constrained backend then cannot
    return more items than were asked for, nor an empty list unless ``min_count`` is 0. Made once per
    arguments (pydantic takes milliseconds per schema, and every request of a stage needs the same one).
    """
    return json.loads(_schema_json(model, count, min_count))


@functools.lru_cache(maxsize=256)
def _schema_json(model: type[BaseModel], count: int | None, min_count: int) -> str:
    list_field = getattr(model, "list_field", None)
    if count is None or list_field is None:
        return json.dumps(model.model_json_schema())
    if count < max(min_count, 1):
        raise ValueError(f"count must be at least {max(min_count, 1)}, got {count}")
    item_type = model.model_fields[list_field].annotation
    bounded = create_model(
        model.__name__,
        __base__=model,
        **{list_field: (Annotated[item_type, Field(min_length=min_count, max_length=count)], ...)},
    )
    return json.dumps(bounded.model_json_schema())


def output_example(model: type[BaseModel]) -> str:
    """A one-line JSON example of ``model``'s shape, with each field's description as its value."""

    def example(m: type[BaseModel]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, field in m.model_fields.items():
            annotation = field.annotation
            inner = getattr(annotation, "__args__", None)
            if inner and isinstance(inner[0], type) and issubclass(inner[0], BaseModel):  # list[Item]
                out[name] = [example(inner[0])]
            else:
                out[name] = f"<{field.description or name}>"
        return out

    return json.dumps(example(model), ensure_ascii=False)


class OutputError(DocrerankError):
    """A model output that is not what the prompt asked for; ``reason`` says why, ``raw`` keeps the text."""

    def __init__(self, reason: str, raw: str = ""):
        self.reason = reason
        self.raw = raw
        super().__init__(reason)


def parse_output(model: type[M], generation: Generation) -> M:
    """Validate a generation against ``model``; raise ``OutputError`` with the reason and the raw text.

    Uses the JSON the backend already decoded (``generation.parsed``) when there is one.
    """
    if generation.error is not None:
        raise OutputError(f"generation failed: {generation.error}", generation.text)
    data = generation.parsed
    if data is None:
        from docrerank.backends.structured import JsonParseError, parse_json_output

        try:
            data = parse_json_output(generation.text)
        except JsonParseError as exc:
            raise OutputError(f"structured output: {exc}", generation.text) from None
    list_field = getattr(model, "list_field", None)
    if list_field is not None and isinstance(data, list):  # a bare list where {"queries": [...]} was asked
        data = {list_field: data}
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in error['loc']) or 'output'}: {error['msg']}" for error in exc.errors()[:5]
        )
        raise OutputError(f"output does not match {model.__name__}: {problems}", generation.text) from None
