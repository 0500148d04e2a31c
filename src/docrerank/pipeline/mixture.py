"""Training mixtures: generated negative queries and mined negative pages, mixed by example (the paper's way).

An *example* is one positive (query, page) with its negatives, which are either negative *pages* (from a
mined set, ``docrerank mine``) or negative *queries* on the same page (from a generation run); never both.
A recipe says what share of the examples gets each kind, how many negatives an example carries, and whether
rephrased positives and property-controlled negatives come in:

``mined-only``  every example with mined pages (the paper's MonoQwen / Col-HNDoc baseline);
``base``        half mined, half generated free-form negatives, the same total (the paper's DocReRank-Base);
``full``        ``base`` plus each chosen positive's rephrasings (with the same kind of negatives) and
                generated negatives of every kind (property-controlled and rule-based edits too);
``reworded``    ``full``, but a positive that has rephrasings is used only in their words: generated questions
                copy their page's words, people's questions do not, and a student learns which to trust.

Each positive is used once, so the kinds never share a positive. The total defaults to the number of
positives with mined negatives (what ``mined-only`` uses), so ``base`` and ``mined-only`` have the same
total, as in the paper's ablation; when the sources cannot fill a share, the total shrinks until they can
and the summary says so. Positives from a run and from a mined set are the same positive when they have the
same page and the same text. Choices are seeded.

Rows (one per example) carry both layouts: ColHNQue's (``image``, ``positive_queries`` = [query],
``negative_queries`` = [[...]], ``answer``) and Col-HNDoc's (``query``, ``image``, ``negative_images``),
plus ``negative_kind`` (``pages`` or ``queries``), ``variant`` (``original`` or ``rephrased``), ids, texts,
the source of the negatives and a provenance string.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from docrerank import __version__
from docrerank.errors import DocrerankError, import_optional
from docrerank.pages import PageStore
from docrerank.pipeline.export import (
    FORMATS,
    prepare_out,
    read_selected,
    write_image_rows,
    write_jsonl_lines,
)
from docrerank.pipeline.records import QueryRecord
from docrerank.retrieval.mining import MinedExample, read_mined

__all__ = ["RECIPES", "MixRecipe", "MixSummary", "mix", "mixture_features", "recipe"]

FREEFORM = "llm:freeform"


class MixRecipe(BaseModel):
    """How a mixture is made; a config file (YAML) may override any field of a built-in recipe."""

    model_config = ConfigDict(extra="forbid")

    mined: float = Field(0.5, ge=0, le=1, description="share of examples with mined negative pages")
    generated: float = Field(0.5, ge=0, le=1, description="share of examples with generated negative queries")
    total: int | None = Field(None, ge=1, description="examples of original positives (default: see module doc)")
    negatives_per_example: int = Field(3, ge=1)
    rephrased: bool = Field(False, description="add each chosen positive's rephrasings as examples too")
    originals: bool = Field(
        True, description="keep a positive's own wording beside its rephrasings (false: only theirs, where it has some)"
    )
    property_negatives: bool = Field(False, description="generated negatives of every kind, not only free-form")
    drop_likely_false_negatives: bool = Field(
        True, description="leave out mined pages the verifier judged to answer the query (mine --verify)"
    )
    seed: int = 0


RECIPES: dict[str, MixRecipe] = {
    "mined-only": MixRecipe(mined=1.0, generated=0.0),
    "base": MixRecipe(),
    "full": MixRecipe(rephrased=True, property_negatives=True),
    "reworded": MixRecipe(rephrased=True, property_negatives=True, originals=False),
}


def recipe(name: str, overrides: dict[str, Any] | None = None) -> MixRecipe:
    """A built-in recipe, with a config's fields on top."""
    if name not in RECIPES:
        raise DocrerankError(f"unknown recipe {name!r}: use one of {', '.join(RECIPES)}")
    chosen = RECIPES[name].model_copy(update=overrides or {})
    chosen = MixRecipe.model_validate(chosen.model_dump())  # validate the overrides
    if abs(chosen.mined + chosen.generated - 1.0) > 1e-9:
        raise DocrerankError(
            f"a recipe's mined and generated shares must add up to 1, not {chosen.mined} + {chosen.generated}"
        )
    return chosen


def _key(page_id: str, text: str) -> tuple[str, str]:
    return page_id, " ".join(text.split()).lower()


@dataclass
class _Positive:
    """What the sources hold about one positive."""

    page_id: str
    query: str
    answer: str = ""
    negative_queries: list[QueryRecord] = field(default_factory=list)
    rephrasings: list[str] = field(default_factory=list)
    mined: MinedExample | None = None
    run: str | None = None
    mined_from: str | None = None


def _collect(
    runs: list[Path], mined_sets: list[Path], corrections: bool = True
) -> tuple[dict[tuple[str, str], _Positive], dict[tuple[str, str], MinedExample]]:
    positives: dict[tuple[str, str], _Positive] = {}
    for run in runs:
        records = read_selected(run, corrections)
        children: dict[str, list[QueryRecord]] = {}
        for record in records:
            if record.parent_id:
                children.setdefault(record.parent_id, []).append(record)
        for record in records:
            if record.kind != "positive":
                continue
            entry = positives.setdefault(_key(record.page_id, record.text), _Positive(record.page_id, record.text))
            kids = children.get(record.query_id, [])
            entry.answer = record.answer or entry.answer
            entry.negative_queries += [c for c in kids if c.kind == "negative"]
            entry.rephrasings += [c.text for c in kids if c.kind == "rephrased"]
            entry.run = entry.run or str(run)
    rephrasings = {_key(p.page_id, text) for p in positives.values() for text in p.rephrasings}
    by_text: dict[tuple[str, str], MinedExample] = {}
    for path in mined_sets:
        for example in read_mined(path):
            key = _key(example.positive, example.query)
            by_text.setdefault(key, example)
            if key in positives:
                positives[key].mined = positives[key].mined or example
                positives[key].mined_from = positives[key].mined_from or str(path)
            elif key not in rephrasings and example.rephrasing_of is None:  # rephrasings: found through by_text
                entry = positives.setdefault(key, _Positive(example.positive, example.query))
                entry.mined, entry.mined_from = example, str(path)
    return positives, by_text


@dataclass
class MixSummary:
    recipe: str
    out: Path
    format: str
    examples: int = 0
    by_kind: Counter = field(default_factory=Counter)
    by_variant: Counter = field(default_factory=Counter)
    negatives_by_generator: Counter = field(default_factory=Counter)
    short_examples: int = 0
    total_asked: int | None = None
    notes: list[str] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "recipe": self.recipe,
            "format": self.format,
            "out": str(self.out),
            "examples": self.examples,
            "by_kind": dict(self.by_kind),
            "by_variant": dict(self.by_variant),
            "negatives_by_generator": dict(sorted(self.negatives_by_generator.items())),
            "examples_with_fewer_negatives": self.short_examples,
            "notes": self.notes,
        }


def _mined_pages(example: MinedExample | None, settings: MixRecipe) -> list[str]:
    if example is None:
        return []
    keep = [n for n in example.negatives if not (settings.drop_likely_false_negatives and n.likely_false_negative)]
    return [n.page_id for n in keep][: settings.negatives_per_example]


def _generated(positive: _Positive, settings: MixRecipe) -> list[QueryRecord]:
    usable = [n for n in positive.negative_queries if settings.property_negatives or n.generator == FREEFORM]
    return usable[: settings.negatives_per_example]


def _assign(
    positives: list[_Positive], settings: MixRecipe, summary: MixSummary
) -> tuple[list[_Positive], list[_Positive]]:
    """The positives that get mined pages and those that get generated queries, in the recipe's shares."""
    rng = random.Random(settings.seed)
    can_mine = [p for p in positives if _mined_pages(p.mined, settings)]
    can_generate = [p for p in positives if _generated(p, settings)]
    total = settings.total or len(can_mine) or len(can_generate)
    summary.total_asked = total
    mine_only = [p for p in can_mine if not _generated(p, settings)]
    generate_only = [p for p in can_generate if not _mined_pages(p.mined, settings)]
    both = [p for p in can_mine if _generated(p, settings)]
    for group in (mine_only, generate_only, both):
        rng.shuffle(group)
    while total > 0:
        n_mined = round(total * settings.mined)
        n_generated = total - n_mined
        if n_mined <= len(can_mine) and n_generated <= len(can_generate):
            if n_mined + n_generated <= len(mine_only) + len(generate_only) + len(both):
                break
        total -= 1
    if total < (summary.total_asked or 0):
        summary.notes.append(
            f"total cut from {summary.total_asked} to {total}: the sources have {len(can_mine)} positives with mined "
            f"pages and {len(can_generate)} with generated negatives of the recipe's kind"
        )
    n_mined = round(total * settings.mined)
    n_generated = total - n_mined
    mined = mine_only[:n_mined]
    taken = n_mined - len(mined)
    mined += both[:taken]
    generated = generate_only[:n_generated]
    generated += both[taken : taken + n_generated - len(generated)]
    return mined, generated


def mixture_features():
    """The ``datasets`` features of a mixture (``hf`` and ``parquet``)."""
    ds = import_optional("datasets", "data")
    strings = ds.Sequence(ds.Value("string"))
    return ds.Features(
        {
            "image": ds.Image(),
            "query": ds.Value("string"),
            "positive_queries": strings,
            "negative_queries": ds.Sequence(strings),
            "answer": strings,
            "negative_images": ds.Sequence(ds.Image()),
            "negative_page_ids": strings,
            "negative_page_texts": ds.Sequence(ds.Value("large_string")),
            "negative_kind": ds.Value("string"),
            "negative_generators": strings,
            "negative_properties": strings,
            "variant": ds.Value("string"),
            "page_id": ds.Value("string"),
            "doc_id": ds.Value("string"),
            "page_text": ds.Value("large_string"),
            "source": ds.Value("string"),
            "provenance": ds.Value("string"),
        }
    )


def _row(
    store: PageStore,
    positive: _Positive,
    query: str,
    variant: str,
    kind: str,
    settings: MixRecipe,
    mined: MinedExample | None,
    provenance: str,
) -> dict[str, Any]:
    page = store[positive.page_id]
    pages = [store[p] for p in _mined_pages(mined, settings)] if kind == "pages" else []
    negatives = _generated(positive, settings) if kind == "queries" else []
    return {
        "image_path": str(store.image_path(page)),
        "query": query,
        "positive_queries": [query],
        "negative_queries": [[n.text for n in negatives]],
        "answer": [positive.answer],
        "negative_image_paths": [str(store.image_path(p)) for p in pages],
        "negative_page_ids": [p.page_id for p in pages],
        "negative_page_texts": [p.text for p in pages],
        "negative_kind": kind,
        "negative_generators": [n.generator for n in negatives] if negatives else ["mined"] * len(pages),
        "negative_properties": [n.property or "" for n in negatives],
        "variant": variant,
        "page_id": page.page_id,
        "doc_id": page.doc_id,
        "page_text": page.text,
        "source": (positive.mined_from if kind == "pages" else positive.run) or "",
        "provenance": provenance,
    }


def _pair_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The sentence-transformers CrossEncoder format: (query, page text, label)."""
    pairs = []
    for row in rows:
        pairs.append({"query": row["query"], "text": row["page_text"], "label": 1})
        pairs += [{"query": q, "text": row["page_text"], "label": 0} for q in row["negative_queries"][0]]
        pairs += [{"query": row["query"], "text": t, "label": 0} for t in row["negative_page_texts"]]
    return pairs


def mix(
    store: PageStore,
    runs: list[Path],
    mined_sets: list[Path],
    name: str,
    out: Path,
    fmt: str = "hf",
    overrides: dict[str, Any] | None = None,
    overwrite: bool = False,
    corrections: bool = True,
) -> MixSummary:
    """Build the recipe ``name`` from generation runs and mined sets and write it in format ``fmt`` (each run
    with a person's corrections applied unless ``corrections`` is false)."""
    if fmt not in FORMATS:
        raise DocrerankError(f"unknown format {fmt!r}: use one of {', '.join(FORMATS)}")
    settings = recipe(name, overrides)
    if settings.mined > 0 and not mined_sets:
        raise DocrerankError(f"the recipe {name!r} needs mined negatives: give --mined (from `docrerank mine`)")
    if settings.generated > 0 and not runs:
        raise DocrerankError(
            f"the recipe {name!r} needs generated negatives: give --run-dir (a generation run directory)"
        )
    out = Path(out)
    positives, mined_by_text = _collect([Path(r) for r in runs], [Path(m) for m in mined_sets], corrections)
    for key in list(positives):
        if positives[key].page_id not in store:
            raise DocrerankError(
                f"page {positives[key].page_id} is not in the store {store.root}: --pages must name the store "
                "the runs and mined sets were made from"
            )
    summary = MixSummary(recipe=name, out=out, format=fmt)
    ordered = [positives[key] for key in sorted(positives)]
    with_mined, with_generated = _assign(ordered, settings, summary)
    provenance = json.dumps(
        {
            "recipe": name,
            "settings": settings.model_dump(),
            "runs": [str(Path(r).resolve()) for r in runs],
            "mined": [str(Path(m).resolve()) for m in mined_sets],
            "store": str(Path(store.root).resolve()),
            "docrerank_version": __version__,
        },
        sort_keys=True,
    )
    rows = []
    for kind, chosen in (("pages", with_mined), ("queries", with_generated)):
        for positive in chosen:
            reworded = settings.rephrased and positive.rephrasings
            if settings.originals or not reworded:
                rows.append(
                    _row(store, positive, positive.query, "original", kind, settings, positive.mined, provenance)
                )
            if not reworded:
                continue
            for text in positive.rephrasings:
                own = mined_by_text.get(_key(positive.page_id, text))
                source = own if own is not None and _mined_pages(own, settings) else positive.mined
                rows.append(_row(store, positive, text, "rephrased", kind, settings, source, provenance))
    prepare_out(out, overwrite)
    for row in rows:
        summary.by_kind[row["negative_kind"]] += 1
        summary.by_variant[row["variant"]] += 1
        summary.negatives_by_generator.update(row["negative_generators"])
        count = len(row["negative_page_ids"]) + len(row["negative_queries"][0])
        summary.short_examples += count < settings.negatives_per_example
    summary.examples = len(rows)
    if fmt in ("hf", "parquet"):
        summary.files = write_image_rows(rows, out, fmt, mixture_features())
    elif fmt == "jsonl":
        path = out / "examples.jsonl"
        write_jsonl_lines(path, iter(rows))
        summary.files = [path]
    else:
        path = out / "pairs.jsonl"
        write_jsonl_lines(path, iter(_pair_rows(rows)))
        summary.files = [path]
    meta = out / "provenance.json"
    meta.write_text(json.dumps({**json.loads(provenance), "summary": summary.as_dict()}, indent=2) + "\n")
    summary.files.append(meta)
    return summary
