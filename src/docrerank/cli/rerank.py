"""``docrerank rerank``: a first-stage TREC run reordered by a reranker, written as a TREC run."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from docrerank.backends import load_backend
from docrerank.cli.files import pipeline_config, print_skipped
from docrerank.cli.options import PagesOption
from docrerank.cli.progress import progress_bar
from docrerank.cli.retrieve import QueriesOption, open_queries
from docrerank.errors import DocrerankError
from docrerank.prompts.focus import PAGE_VIEWS
from docrerank.prompts.requests import DEFAULT_MAX_PAGE_CHARS
from docrerank.rerankers import RERANKER_KINDS, CascadeReranker, LLMReranker, Reranker, default_chain
from docrerank.rerankers.onnx_runtime import RUNTIMES
from docrerank.retrieval import Ranking, read_trec, write_trec

__all__ = [
    "DEFAULT_CHAIN",
    "DEFAULT_RERANKER",
    "NO_RERANKER",
    "RERANKERS",
    "RERANKER_CHOICES",
    "CascadeTopOption",
    "TrustRerankerOption",
    "llm_reranker",
    "RuntimeOption",
    "make_reranker",
    "rerank_command",
]

stdout = Console()
stderr = Console(stderr=True)
# `--reranker`: the kinds built from these options, or a reranker saved in a folder (any kind)
RERANKERS = (*(name for name, kind in RERANKER_KINDS.items() if kind.built_by_rerank), "saved")
NO_RERANKER = "none"  # `rerank --reranker none`: the first stage's order, kept
# The default is the chain that beat the default first stage with p < 0.05 on the quality benchmark's 94
# questions in a test declared before it ran (bench/decision.py; README "The declared test, run"): a cascade of
# the shipped fusion under the embedded 1.5B. `--model`, `--cascade-top` and `--page-view` change its parts.
DEFAULT_RERANKER = "cascade"
DEFAULT_CHAIN = (
    f"the default chain: the fusion trained on the generated data ({default_chain.STUDENT.name}, shipped) reorders "
    f"the first stage's top {default_chain.DEPTH} and the embedded 1.5B re-scores its top {default_chain.TOP}, "
    f"reading the focused view: {default_chain.MEASURED}"
)
RERANKER_CHOICES = (
    f"--reranker {NO_RERANKER} (rerank: the first stage's order), --reranker llm (the embedded 1.5B zero-shot over "
    "every candidate: reading the focused view +0.019 NDCG@5 on the 94 rephrased questions, not significant, 0.25 "
    "pairs/s; whole pages 0.13 pairs/s), --reranker saved --model DIR (a model you trained, or the shipped fusion "
    "alone: +0.035, p = 0.066, 1.9 pairs/s), --reranker cascade --model DIR (your student under the 1.5B)"
)


# The options that name a reranker, shared by `rerank` and `serve` (make_reranker reads them).
RerankerOption = Annotated[
    str,
    typer.Option(
        "--reranker",
        help=f"one of: {', '.join(RERANKERS)} (llm: the embedded 1.5B zero-shot), or {NO_RERANKER} (`rerank`: keep "
        "the first stage's order); default: cascade, the chain measured to beat the first stage (README)",
    ),
]
ModelOption = Annotated[
    str | None,
    typer.Option(
        "--model",
        help="cross-encoder or bi-encoder model, or a saved reranker folder (for cascade: the student's; default: "
        "the shipped fusion)",
    ),
]
ConfigOption = Annotated[
    Path | None, typer.Option("--config", help="pipeline config (YAML) with the llm (or cascade teacher) backend")
]
BackendOption = Annotated[str, typer.Option("--backend", help="the config's backend for --reranker llm or cascade")]
CascadeTopOption = Annotated[
    int,
    typer.Option(
        "--cascade-top", min=1, help="--reranker cascade: pages of the student's top the LLM re-scores (3: as tested)"
    ),
]
PageViewOption = Annotated[
    str | None,
    typer.Option(
        "--page-view",
        help="what the llm reranker reads of a page: whole (its first --max-page-chars) or focused (the passages "
        "nearest the query, a few times faster); default: focused in a cascade (as the default chain was tested), "
        "whole for llm",
    ),
]
RuntimeOption = Annotated[
    str,
    typer.Option(
        "--runtime",
        help=f"how a cross-encoder (or a saved one) runs: one of {', '.join(RUNTIMES)} (ONNX Runtime on CPU: fp32 "
        "or int8 weights; exported beside the model on first use)",
    ),
]
TrustRerankerOption = Annotated[
    bool,
    typer.Option(
        "--trust-reranker",
        help="load a saved reranker (--model) even if it sends an API key to another host or runs remote code",
    ),
]


def llm_reranker(
    config: Path | None, backend: str, max_page_chars: int = DEFAULT_MAX_PAGE_CHARS, page_view: str = "whole"
) -> LLMReranker:
    """The zero-shot LLM reranker over the config's backend ``backend`` (default config: the embedded 1.5B):
    `--reranker llm`, the cascade's teacher and `docrerank label`'s teacher."""
    if page_view not in PAGE_VIEWS:
        raise DocrerankError(f"--page-view {page_view!r}: use one of {', '.join(PAGE_VIEWS)}")
    settings = pipeline_config(config)
    if backend not in settings.backends:
        where = config or "the built-in config"
        raise DocrerankError(f"no backend named {backend!r} in {where}: one of {', '.join(settings.backends)}")
    return LLMReranker(load_backend(settings.backends[backend]), max_page_chars=max_page_chars, page_view=page_view)


def make_reranker(
    kind: str,
    model: str | None,
    config: Path | None,
    backend: str,
    cascade_top: int = default_chain.TOP,
    trust: bool = False,
    page_view: str | None = None,
    runtime: str = "torch",
) -> Reranker:
    """The reranker `--reranker KIND --model ... [--config --backend --cascade-top --runtime]` names (`rerank`,
    `serve`); ``runtime``: PyTorch or ONNX Runtime for a cross-encoder (a cascade's student).

    ``cascade``: the saved reranker ``--model`` (a student, e.g. trained on teacher scores; default: the shipped
    fusion of the default chain) scores every candidate, and the LLM of ``--config``/``--backend`` re-scores its
    top ``--cascade-top``. ``page_view`` None: focused in a cascade (as tested), whole for ``llm``. ``trust``
    (``--trust-reranker``): load a saved folder that sends an API key off this machine or runs remote code."""
    if kind not in RERANKERS:
        raise DocrerankError(f"unknown reranker {kind!r}: use one of {', '.join(RERANKERS)}")
    if kind == "cascade":
        model = model or str(default_chain.STUDENT)
        page_view = page_view or default_chain.PAGE_VIEW
    page_view = page_view or "whole"
    if kind in ("saved", "cascade"):
        if model is None:
            raise DocrerankError(f"--reranker {kind} needs --model FOLDER (a reranker saved by `docrerank train`)")
        saved = _on(Reranker.load(model, allow_remote=trust), runtime)
        if kind == "saved":
            return saved
        return CascadeReranker(saved, llm_reranker(config, backend, page_view=page_view), cascade_top)
    if kind == "llm":
        return _on(llm_reranker(config, backend, page_view=page_view), runtime)
    return _on(RERANKER_KINDS[kind].cls(model=model), runtime)  # cross-encoder, bi-encoder: a name or folder


def say_default_chain(reranker: str, model: str | None, console: Console, **settings: object) -> None:
    """Tell what the default chain is, its figures and the other choices, when it is the one that runs; and
    which of ``settings`` (cascade_top, page_view, depth) differ from those the figures were measured with
    (None: not given, so the tested default)."""
    if reranker != DEFAULT_RERANKER or model is not None:
        return
    console.print(f"[bold]{escape(DEFAULT_CHAIN)}[/bold]. Other choices: {escape(RERANKER_CHOICES)}", soft_wrap=True)
    tested = {"cascade_top": default_chain.TOP, "page_view": default_chain.PAGE_VIEW, "depth": default_chain.DEPTH}
    changed = [
        f"{name} {value} (tested: {tested[name]})"
        for name, value in settings.items()
        if value not in (None, tested[name])
    ]
    if changed:
        shown = escape(", ".join(changed))
        console.print(f"[yellow]untested settings[/yellow]: {shown}; the figures above do not hold for them")


def _on(reranker: Reranker, runtime: str) -> Reranker:
    """The reranker on ``runtime``: only a cross-encoder runs on ONNX Runtime."""
    if runtime == "torch":
        return reranker
    if not hasattr(reranker, "use_runtime"):
        raise DocrerankError(f"--runtime {runtime} runs a cross-encoder; this reranker is a {reranker.kind}")
    return reranker.use_runtime(runtime)


def _mrr(rankings: dict[str, Ranking], positives: dict[str, list[str]]) -> float:
    ranks = [next((i for i, (p, _) in enumerate(r, 1) if p in positives[q]), None) for q, r in rankings.items()]
    return sum(1 / r for r in ranks if r) / len(ranks) if ranks else 0.0


def rerank_command(
    pages: PagesOption,
    queries: QueriesOption,
    run: Annotated[
        Path,
        typer.Option(
            "--trec",
            "--run",
            help="the first-stage TREC run file to rerank (query ids must match; --run: its old name)",
        ),
    ],
    out: Annotated[Path, typer.Option("--out", help="the reranked TREC run to write")],
    reranker: RerankerOption = DEFAULT_RERANKER,
    model: ModelOption = None,
    config: ConfigOption = None,
    backend: BackendOption = "verifier",
    cascade_top: CascadeTopOption = default_chain.TOP,
    trust_reranker: TrustRerankerOption = False,
    page_view: PageViewOption = None,
    runtime: RuntimeOption = "torch",
    depth: Annotated[
        int,
        typer.Option(
            "--k",
            "--depth",
            min=1,
            help=f"first-stage pages reranked per query ({default_chain.DEPTH}: as the default chain was tested; "
            "--depth: its old name)",
        ),
    ] = default_chain.DEPTH,
    top_k: Annotated[int | None, typer.Option(min=1, help="pages written per query (default: all reranked)")] = None,
) -> None:
    """Rerank the top ``--k`` pages of each query in a first-stage run; with known positives, report MRR.
    Without --reranker the default chain reranks (measured to beat the first stage); --reranker none keeps the
    first stage's order."""
    store, items, skipped = open_queries(pages, queries)
    first, errors = read_trec(run)
    print_skipped(errors, stderr)
    engine = None
    if reranker == NO_RERANKER:
        stdout.print("[yellow]--reranker none[/yellow]: the first stage's order is kept")
    else:
        engine = make_reranker(
            reranker, model, config, backend, cascade_top, trust=trust_reranker, page_view=page_view, runtime=runtime
        )
        say_default_chain(
            reranker,
            model,
            stdout,
            cascade_top=cascade_top,
            page_view=page_view,
            depth=depth,
        )
    reranked, unknown, unscored = {}, set(), 0
    with progress_bar() as bar:
        task = bar.add_task("rerank", total=len(items))
        for query in items:
            candidates = [page for page, _ in first.get(query.query_id, [])[:depth]]
            unknown.update(page for page in candidates if page not in store)
            known = [store[page] for page in candidates if page in store]
            if engine is None:  # the first stage's order and scores, as the run gave them
                scores = dict(first.get(query.query_id, []))
                ranked, failed = [(p.page_id, scores[p.page_id]) for p in known][:top_k], {}
            else:
                ranked, failed = engine.rank_results(query.text, known, top_k) if known else ([], {})
            reranked[query.query_id] = ranked
            for page, why in failed.items():  # a page that could not be scored: ranked last, named
                shown = escape(f"{query.query_id}, {page}: {why}")
                stderr.print(f"[yellow]ranked last[/yellow] {shown}", soft_wrap=True)
            unscored += len(failed)
            bar.advance(task)
    missing = [q.query_id for q in items if q.query_id not in first]
    if missing:
        shown = f"{len(missing)} queries have no ranking in {run}"
        stderr.print(f"[yellow]{escape(shown)}[/yellow] (e.g. {escape(repr(missing[0]))})", soft_wrap=True)
    if unknown:
        stderr.print(
            f"[yellow]{len(unknown)} page ids of {escape(str(run))} are not in the store[/yellow]: "
            "left out (wrong --pages?)"
        )
    write_trec(reranked, out, tag=f"rerank-{reranker if engine is not None else 'first-stage'}")
    where = escape(str(out))
    what = f"reranked ({reranker}" if engine is not None else "in the first stage's order (no reranker"
    stdout.print(f"{len(reranked)} queries {what}, top {depth} of the first stage), written to {where}")
    positives = {q.query_id: q.positives for q in items if q.positives}
    if positives:
        before = {q: first.get(q, [])[:depth] for q in positives}
        after = {q: reranked[q] for q in positives}
        mrr = f"first stage {_mrr(before, positives):.3f}, reranked {_mrr(after, positives):.3f}"
        stdout.print(f"MRR@{depth} over {len(positives)} queries: {mrr}")
    if skipped or errors or missing or unknown or unscored:
        raise typer.Exit(1)
