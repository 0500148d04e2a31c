"""Prompts of the generation pipeline: Jinja2 templates, their output models, and request builders.

Templates ship with the package (``prompts/templates/*.j2``) and are overridable by path; each generation
prompt's expected output is a pydantic model whose generated JSON schema goes into the request. The
builders turn a page and a query into the backend request of one stage.
"""

from docrerank.pages.content import PageContent  # its home is pages/; kept here for old imports
from docrerank.prompts.library import PromptError, PromptTemplate, load_prompt, prompt_names
from docrerank.prompts.outputs import (
    ControlledNegative,
    ControlledNegatives,
    NegativeQueries,
    NegativeQuery,
    OutputError,
    PositiveQueries,
    PositiveQuery,
    Rephrasing,
    output_example,
    output_schema,
    parse_output,
)
from docrerank.prompts.requests import (
    DEFAULT_MAX_PAGE_CHARS,
    VERIFY_CHOICES,
    VERIFY_TEMPLATES,
    QueryLike,
    controlled_negative_request,
    cut_page_text,
    freeform_negative_request,
    positive_request,
    rephrase_request,
    verify_requests,
)

__all__ = [
    "DEFAULT_MAX_PAGE_CHARS",
    "VERIFY_CHOICES",
    "VERIFY_TEMPLATES",
    "ControlledNegative",
    "ControlledNegatives",
    "NegativeQueries",
    "NegativeQuery",
    "OutputError",
    "PageContent",
    "PositiveQueries",
    "PositiveQuery",
    "PromptError",
    "PromptTemplate",
    "QueryLike",
    "Rephrasing",
    "controlled_negative_request",
    "cut_page_text",
    "freeform_negative_request",
    "load_prompt",
    "output_example",
    "output_schema",
    "parse_output",
    "positive_request",
    "prompt_names",
    "rephrase_request",
    "verify_requests",
]
