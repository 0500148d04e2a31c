"""``docrerank inspect``: a training set's quality, checked before it trains anything, with the offending examples.

Checks (each a number, its limit from ``InspectSettings``, and up to ``examples`` offenders):

- ``duplicate_queries``: queries asked twice (after case, punctuation and spacing), on a page or across pages;
  ``near_duplicate_queries``: nearly (rapidfuzz ``ratio`` >= ``near_duplicate``): often a template asked again
  with another value, a distinct question, so its limit is looser;
- ``leaked_pages`` / ``leaked_documents`` / ``leaked_page_texts`` / ``leaked_questions`` (``--against``): the
  evaluation benchmark's relevant pages, their documents, pages with nearly the same text under another id, and
  questions nearly the benchmark's own: the leaks that make a benchmark flatter a model;
- ``answer_in_query``: the positive's answer written in its own query;
- ``trivial_negatives``: negatives that ask what their positive asks, by the pipeline's own test (the same text
  after normalisation, or the same content words): no contrast at all (a one-value edit, the method's hardest
  negative, is not trivial);
- ``no_negative``: positives left without any negative;
- ``property_skew``: the most frequent property of the negatives against the rarest of the properties the
  run's config asked for (max / min share; a property asked and never made counts as 1 negative);
- ``length_skew``: the negatives' mean length in words against the positives' (a model can learn length).

Sources: a run directory (its final records, corrections applied; properties from its config), an export's
queries.jsonl, or any form ``training.data.read_groups`` reads (mixtures, pairs, hf / parquet).
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field
from rapidfuzz import fuzz, process

from docrerank.errors import DocrerankError
from docrerank.pages import PageStore
from docrerank.pipeline.filters import check_against_positive, normalize

__all__ = [
    "Check",
    "Example",
    "InspectSettings",
    "checks_as_json",
    "inspect_examples",
    "read_examples",
    "require_examples",
]


class InspectSettings(BaseModel):
    """Similarity thresholds and the limit of each check (a rate of the examples it counts over, or a count)."""

    model_config = ConfigDict(extra="forbid")

    near_duplicate: float = Field(92, ge=0, le=100, description="rapidfuzz ratio at which two queries are one")
    near_duplicate_page: float = Field(95, ge=0, le=100, description="ratio at which two page texts are one")
    answer_min_chars: int = Field(3, ge=1, description="shorter answers are not looked for in the query")
    examples: int = Field(5, ge=0, description="offending examples shown per check")
    max_duplicate_queries: float = 0.0
    max_near_duplicate_queries: float = 0.15
    max_leaks: int = 0
    max_answer_in_query: float = 0.05
    max_trivial_negatives: float = 0.02
    max_no_negative: float = 0.25
    max_property_skew: float = 4.0
    max_length_skew: float = 1.5

    @classmethod
    def from_yaml(cls, path: str | Path) -> InspectSettings:
        data = yaml.safe_load(Path(path).read_text()) or {}
        return cls.model_validate(data.get("inspect", data))


@dataclass
class Negative:
    text: str
    generator: str | None = None
    property: str | None = None


@dataclass
class Example:
    """A positive query on its page, its negative queries and negative pages, as inspect reads any source."""

    page_id: str
    doc_id: str
    query: str
    answer: str | None = None
    negatives: list[Negative] = field(default_factory=list)
    negative_pages: list[str] = field(default_factory=list)
    page_text: str | None = None


@dataclass
class Check:
    name: str
    value: float
    limit: float
    over: int  # what the value counts over (examples, negatives, ...), for rates
    detail: str
    examples: list[str] = field(default_factory=list)

    @property
    def crossed(self) -> bool:
        return self.value > self.limit

    def as_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "crossed": self.crossed}


def read_examples(source: str | Path, store: PageStore | None = None) -> tuple[list[Example], list[str]]:
    """The examples of ``source``, and the properties its run asked for (empty when it does not say)."""
    path = Path(source)
    if (path / "shards").is_dir():
        return _run_examples(path)
    queries = path / "queries.jsonl" if path.is_dir() else path
    if queries.name == "queries.jsonl" and queries.is_file():
        return [_export_example(json.loads(line)) for line in queries.read_text().splitlines() if line.strip()], []
    from docrerank.training.data import read_groups  # the training extra's reader of every other form

    examples = [
        Example(
            page_id=g.page.page_id or "",
            doc_id=g.doc_id,
            query=g.query,
            negatives=[Negative(q) for q in g.negative_queries],
            negative_pages=[p.page_id or "" for p in g.negative_pages],
            page_text=g.page.text,
        )
        for g in read_groups(path, store)
    ]
    return examples, []


def _export_example(row: dict[str, Any]) -> Example:
    negatives = [Negative(n["text"], n.get("generator"), n.get("property")) for n in row.get("negatives", [])]
    return Example(row["page_id"], row.get("doc_id", ""), row["query"], row.get("answer"), negatives)


def _run_examples(root: Path) -> tuple[list[Example], list[str]]:
    from docrerank.pipeline.export import read_selected

    records = read_selected(root)
    children: dict[str, list] = defaultdict(list)
    for record in records:
        if record.parent_id:
            children[record.parent_id].append(record)
    properties: list[str] = []
    if (root / "config.yaml").is_file():
        from docrerank.pipeline.config import PipelineConfig
        from docrerank.pipeline.properties import get_property_set

        config = PipelineConfig.from_yaml(root / "config.yaml")
        controlled = config.negative_candidates.controlled
        if controlled.enabled:
            names = [p.name for p in get_property_set(controlled.property_set, config.property_sets).properties]
            properties = [name for name in names if controlled.properties is None or name in controlled.properties]
    examples = [
        Example(
            page_id=r.page_id,
            doc_id="",
            query=r.text,
            answer=r.answer,
            negatives=[Negative(c.text, c.generator, c.property) for c in children[r.query_id] if c.kind == "negative"],
        )
        for r in records
        if r.kind == "positive"
    ]
    return examples, properties


def inspect_examples(
    examples: list[Example],
    settings: InspectSettings | None = None,
    properties: Iterable[str] = (),
    against: Any | None = None,
) -> list[Check]:
    """Every check over ``examples``; the leak checks when ``against`` (an evaluation ``Benchmark``) is given."""
    settings = settings or InspectSettings()
    checks = [
        *_duplicates(examples, settings),
        _answer_in_query(examples, settings),
        _trivial_negatives(examples, settings),
        _no_negative(examples, settings),
        _property_skew(examples, settings, list(properties)),
        _length_skew(examples, settings),
    ]
    if against is not None:
        checks += _leaks(examples, settings, against)
    return checks


def _duplicates(examples: list[Example], settings: InspectSettings) -> list[Check]:
    """Exact duplicates (the same question twice: a model learns it twice as much) and near ones (a template
    asked again with another value: worth a look, often a distinct question)."""
    texts = [normalize(e.query) for e in examples]
    exact: dict[str, int] = {}
    twice, exact_shown = set(), []
    for index, text in enumerate(texts):
        if text in exact:
            twice.update({index, exact[text]})
            first = examples[exact[text]]
            exact_shown.append(f"{examples[index].query!r} (pages {first.page_id}, {examples[index].page_id})")
        exact.setdefault(text, index)
    unique = list(exact.values())
    near, near_shown = set(), []
    if len(unique) > 1:
        scores = process.cdist(
            [texts[i] for i in unique],
            [texts[i] for i in unique],
            scorer=fuzz.ratio,
            score_cutoff=settings.near_duplicate,
        )
        for a in range(len(unique)):
            for b in range(a + 1, len(unique)):
                if scores[a][b]:
                    i, j = unique[a], unique[b]
                    near.update({i, j})
                    where = "same page" if examples[i].page_id == examples[j].page_id else "across pages"
                    near_shown.append(f"({where}, {scores[a][b]:.0f}) {examples[i].query!r} ~ {examples[j].query!r}")
    count = len(examples) or 1
    return [
        Check(
            "duplicate_queries", len(twice) / count, settings.max_duplicate_queries, len(examples),
            f"{len(twice)} of {len(examples)} queries asked twice or more (after case and punctuation)",
            exact_shown[: settings.examples],
        ),
        Check(
            "near_duplicate_queries", len(near) / count, settings.max_near_duplicate_queries, len(examples),
            f"{len(near)} of {len(examples)} queries nearly another (ratio >= {settings.near_duplicate:g})",
            near_shown[: settings.examples],
        ),
    ]  # fmt: skip


def _answer_in_query(examples: list[Example], settings: InspectSettings) -> Check:
    judged = [e for e in examples if e.answer and len(e.answer.strip()) >= settings.answer_min_chars]
    found = [e for e in judged if normalize(e.answer) and f" {normalize(e.answer)} " in f" {normalize(e.query)} "]
    rate = len(found) / len(judged) if judged else 0.0
    shown = [f"{e.query!r} holds its answer {e.answer!r}" for e in found]
    return Check(
        "answer_in_query",
        rate,
        settings.max_answer_in_query,
        len(judged),
        f"{len(found)} of {len(judged)} queries with an answer write it",
        shown[: settings.examples],
    )


def _trivial_negatives(examples: list[Example], settings: InspectSettings) -> Check:
    """The pipeline's own test of a negative against its positive (``filters.check_against_positive``)."""
    total, offenders = 0, []
    for example in examples:
        for negative in example.negatives:
            total += 1
            decision = check_against_positive(negative.text, example.query)
            if not decision.keep:
                offenders.append(f"{negative.text!r} is its positive {example.query!r} ({decision.reason})")
    rate = len(offenders) / total if total else 0.0
    return Check(
        "trivial_negatives", rate, settings.max_trivial_negatives, total,
        f"{len(offenders)} of {total} negatives ask what their positive asks (same text or content words)",
        offenders[: settings.examples],
    )  # fmt: skip


def _no_negative(examples: list[Example], settings: InspectSettings) -> Check:
    empty = [e for e in examples if not e.negatives and not e.negative_pages]
    rate = len(empty) / len(examples) if examples else 0.0
    return Check(
        "no_negative",
        rate,
        settings.max_no_negative,
        len(examples),
        f"{len(empty)} of {len(examples)} positives have no negative",
        [f"{e.query!r} (page {e.page_id})" for e in empty][: settings.examples],
    )


def _property_skew(examples: list[Example], settings: InspectSettings, asked: list[str]) -> Check:
    made = Counter(n.property for e in examples for n in e.negatives if n.property)
    counts = {name: made.get(name, 0) for name in asked} or dict(made)
    if len(counts) < 2:
        return Check(
            "property_skew",
            1.0,
            settings.max_property_skew,
            sum(counts.values()),
            "fewer than two properties: nothing to compare",
        )
    most, least = max(counts.items(), key=lambda kv: kv[1]), min(counts.items(), key=lambda kv: kv[1])
    ratio = most[1] / max(least[1], 1)
    shown = [f"{name}: {count}" for name, count in sorted(counts.items(), key=lambda kv: -kv[1])]
    return Check(
        "property_skew",
        ratio,
        settings.max_property_skew,
        sum(counts.values()),
        f"{most[0]} {most[1]} negatives against {least[0]} {least[1]}",
        shown[: settings.examples],
    )


def _length_skew(examples: list[Example], settings: InspectSettings) -> Check:
    positives = [len(e.query.split()) for e in examples]
    negatives = [len(n.text.split()) for e in examples for n in e.negatives]
    if not positives or not negatives:
        return Check("length_skew", 1.0, settings.max_length_skew, len(negatives), "no negative queries to compare")
    mean_pos, mean_neg = sum(positives) / len(positives), sum(negatives) / len(negatives)
    ratio = max(mean_pos, mean_neg) / max(min(mean_pos, mean_neg), 1e-9)
    return Check(
        "length_skew",
        ratio,
        settings.max_length_skew,
        len(negatives),
        f"negatives {mean_neg:.1f} words on average, positives {mean_pos:.1f}",
    )


def _leaks(examples: list[Example], settings: InspectSettings, benchmark: Any) -> list[Check]:
    relevant = {pid for judged in benchmark.qrels.values() for pid, grade in judged.items() if grade > 0}
    corpus = benchmark.corpus
    pages = {e.page_id for e in examples} | {p for e in examples for p in e.negative_pages}
    same_page = sorted(pages & relevant)
    documents: set[str] = set()
    if isinstance(corpus, PageStore):
        documents = {corpus[pid].doc_id for pid in relevant if pid in corpus}
    doc_of = {e.page_id: e.doc_id for e in examples}
    if isinstance(corpus, PageStore):  # a run's examples carry no doc id: the benchmark's store knows them
        doc_of |= {pid: corpus[pid].doc_id for pid in doc_of if not doc_of[pid] and pid in corpus}
    same_doc = sorted({pid for pid, doc in doc_of.items() if doc and doc in documents})
    texts = {e.page_id: e.page_text for e in examples if e.page_text}
    relevant_texts = {
        pid: normalize(getattr(corpus[pid], "text", "") or "")[:2000] for pid in relevant if pid in corpus
    }
    near_pages = []
    for pid, text in texts.items():
        if pid in relevant:
            continue
        for other, other_text in relevant_texts.items():
            if other_text and fuzz.ratio(normalize(text)[:2000], other_text) >= settings.near_duplicate_page:
                near_pages.append(f"page {pid} has the text of the benchmark's page {other}")
                break
    questions = list(benchmark.queries.values())
    near_questions = []
    if questions:
        for example in examples:
            match = process.extractOne(
                normalize(example.query),
                [normalize(q) for q in questions],
                scorer=fuzz.ratio,
                score_cutoff=settings.near_duplicate,
            )
            if match:
                near_questions.append(f"{example.query!r} ~ the benchmark's {questions[match[2]]!r} ({match[1]:.0f})")
    limit, shown = settings.max_leaks, settings.examples
    return [
        Check(
            "leaked_pages",
            len(same_page),
            limit,
            len(pages),
            f"{len(same_page)} of the dataset's pages are relevant pages of the benchmark",
            [f"page {p}" for p in same_page][:shown],
        ),
        Check(
            "leaked_documents",
            len(same_doc),
            limit,
            len(doc_of),
            f"{len(same_doc)} of the dataset's positive pages "
            "are in a document the benchmark's relevant pages come from",
            [f"page {p}" for p in same_doc][:shown],
        ),
        Check(
            "leaked_page_texts",
            len(near_pages),
            limit,
            len(texts),
            f"{len(near_pages)} pages nearly the text of a relevant page of the benchmark (another id)",
            near_pages[:shown],
        ),
        Check(
            "leaked_questions",
            len(near_questions),
            limit,
            len(examples),
            f"{len(near_questions)} queries nearly one of the benchmark's questions",
            near_questions[:shown],
        ),
    ]


def checks_as_json(checks: list[Check]) -> str:
    return json.dumps(
        {"checks": [c.as_dict() for c in checks], "crossed": [c.name for c in checks if c.crossed]}, indent=2
    )


def require_examples(examples: list[Example], source: str | Path) -> None:
    if not examples:
        raise DocrerankError(f"{source} holds no positive query: nothing to inspect")
