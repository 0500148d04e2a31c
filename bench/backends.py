"""Backend benchmarks, each a ratio against a reference measured in the same run.

1. Orchestration overhead of the OpenAI-compatible backend: a FAKE loopback server (a child process, so it
   does not share the GIL with the client) answers every request after a fixed 100 ms. At concurrency 1, 16
   and 64, the achieved requests/s divided by the ideal (concurrency / 0.1 s). Goal: >= 0.9 at 64.
2. Embedded generation: completion tokens/s through the llamacpp backend divided by tokens/s of
   llama-cpp-python's own ``create_chat_completion`` on the same prompts, same loaded model, greedy, the
   two alternated and the best of ``--repeats`` taken. Goal: >= 0.95.
3. Choice scoring with the page prefix kept: yes/no pairs/s through the backend (questions about the same
   page share its evaluated prefix) divided by pairs/s of the same prompts evaluated from scratch each time.
4. Grammar-constrained sampling: completion tokens/s of prompts answered under a JSON schema (the pipeline's
   structured outputs: llama.cpp samples through a grammar) divided by tokens/s of the same prompts free.

Absolute rates depend on the machine and are printed only beside the ratios.

    python bench/backends.py            # full run (~5 min on 2 cores)
    python bench/backends.py --quick    # ~1.5 min
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from docrerank.backends import ChatRequest, ChoiceRequest, Message, SamplingParams, load_backend
from docrerank.testing.fake_server import FakeOpenAIServer

PROMPTS = [
    "Write one question a statistician might ask about survival curves.",
    "Explain in two sentences what a structural break in a time series is.",
    "Give three R functions for linear regression and say what each does.",
    "What does the function Fstats in the strucchange package compute?",
    "Rewrite this question so it asks about 2019 instead of 2021: What was the revenue in 2021?",
    "List two differences between BM25 and dense retrieval.",
]

PAGE = (
    "5.1 F statistics: function Fstats. A natural idea to extend the ideas from the Chow test is to calculate "
    "the F statistics for all potential change points or for all potential change points in an interval "
    "[i, n - i] and to reject if any of those statistics get too large. Andrews (1993) and Andrews and "
    "Ploberger (1994) respectively suggested to look at the sup F or the ave F and exp F statistics. "
) * 3
QUESTIONS = [
    "Which function computes F statistics for all potential change points?",
    "Who suggested the sup F statistic?",
    "What year did Andrews publish the sup F test?",
    "Which test does the F statistics approach extend?",
    "What is the default bandwidth of the OLS-CUSUM test?",
    "How many change points does the example data have?",
    "What does exp F stand for?",
    "Which package provides the function Fstats?",
]


def overhead(concurrency: int, rounds: int) -> dict:
    with FakeOpenAIServer(latency_s=0.1, separate_process=True) as server:
        backend = load_backend(server.backend_config(concurrency))
        requests = [ChatRequest(messages=[Message(role="user", content=f"q {i}")]) for i in range(concurrency * rounds)]
        backend.generate(requests[: min(len(requests), concurrency)])  # warm-up: connections, imports
        started = time.perf_counter()
        results = backend.generate(requests)
        elapsed = time.perf_counter() - started
    failed = sum(not r.ok for r in results)
    rate = len(requests) / elapsed
    return {
        "concurrency": concurrency,
        "requests": len(requests),
        "failed": failed,
        "rate": rate,
        "ideal": concurrency / 0.1,
        "ratio": rate / (concurrency / 0.1),
    }


def generation(model: str, repeats: int, max_tokens: int) -> dict:
    backend = load_backend({"type": "llamacpp", "model": model, "n_ctx": 2048})
    llm = backend.llm
    chats = [[{"role": "user", "content": p}] for p in PROMPTS]
    requests = [
        ChatRequest(messages=[Message(role="user", content=p)], sampling=SamplingParams(max_tokens=max_tokens))
        for p in PROMPTS
    ]

    def direct() -> float:
        tokens, started = 0, time.perf_counter()
        for chat in chats:
            out = llm.create_chat_completion(messages=chat, temperature=0.0, max_tokens=max_tokens, seed=0)
            tokens += out["usage"]["completion_tokens"]
        return tokens / (time.perf_counter() - started)

    def through_backend() -> float:
        started = time.perf_counter()
        results = backend.generate(requests)
        return sum(r.usage.completion_tokens for r in results) / (time.perf_counter() - started)

    direct_rates, backend_rates = [], []
    for _ in range(repeats):
        llm.reset()
        direct_rates.append(direct())
        llm.reset()
        backend_rates.append(through_backend())
    best_direct, best_backend = max(direct_rates), max(backend_rates)
    return {
        "model": model,
        "direct_tokens_s": best_direct,
        "backend_tokens_s": best_backend,
        "ratio": best_backend / best_direct,
    }


QUESTIONS_SCHEMA = {
    "type": "object",
    "properties": {"queries": {"type": "array", "items": {"type": "object", "properties": {"query": {"type": "string"}},
                                                           "required": ["query"]}}},
    "required": ["queries"],
}  # fmt: skip


def grammar(model: str, repeats: int, max_tokens: int) -> dict:
    backend = load_backend({"type": "llamacpp", "model": model, "n_ctx": 2048})
    ask = 'Write four search questions about this topic, as JSON {"queries": [{"query": ...}]}: '

    def rate(schema) -> float:
        requests = [
            ChatRequest(
                messages=[Message(role="user", content=ask + p)],
                sampling=SamplingParams(max_tokens=max_tokens),
                json_schema=schema,
            )
            for p in PROMPTS
        ]
        started = time.perf_counter()
        results = backend.generate(requests)
        return sum(r.usage.completion_tokens for r in results) / (time.perf_counter() - started)

    free, structured = [], []
    for _ in range(repeats):  # alternated, best of each
        free.append(rate(None))
        structured.append(rate(QUESTIONS_SCHEMA))
    return {"model": model, "free_tokens_s": max(free), "schema_tokens_s": max(structured),
            "ratio": max(structured) / max(free)}  # fmt: skip


def choice_prefix(model: str, repeats: int) -> dict:
    backend = load_backend({"type": "llamacpp", "model": model, "n_ctx": 2048})
    llm = backend.llm
    requests = [
        ChoiceRequest(
            messages=[
                Message(
                    role="user",
                    content=f"Page:\n{PAGE}\n\nQuestion: {q}\nCan the page answer the question? Answer yes or no.",
                )
            ]
        )
        for q in QUESTIONS
    ]
    prompts = [backend._prompt_tokens(r.messages) for r in requests]

    def from_scratch() -> float:
        started = time.perf_counter()
        for tokens in prompts:
            llm.reset()
            llm.eval(tokens)
            np.ctypeslib.as_array(llm._ctx.get_logits(), shape=(llm.n_vocab(),)).copy()
        return len(prompts) / (time.perf_counter() - started)

    def through_backend() -> float:
        llm.reset()
        started = time.perf_counter()
        backend.score_choices(requests)
        return len(requests) / (time.perf_counter() - started)

    scratch = max(from_scratch() for _ in range(repeats))
    kept = max(through_backend() for _ in range(repeats))
    return {
        "model": model,
        "scratch_pairs_s": scratch,
        "backend_pairs_s": kept,
        "ratio": kept / scratch,
        "prompt_tokens": int(np.mean([len(p) for p in prompts])),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer rounds and repeats")
    parser.add_argument("--model", default="qwen2.5-coder-0.5b-instruct", help="bundle or GGUF for 2 and 3")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    rounds, repeats, max_tokens = (8, 2, 48) if args.quick else (20, 3, 96)

    console = Console()
    results: dict = {"overhead": [overhead(c, rounds) for c in (1, 16, 64)]}
    table = Table(title="1. HTTP backend vs ideal (fake server, 100 ms latency)", title_justify="left")
    for column in ("concurrency", "requests", "achieved req/s", "ideal req/s", "ratio", "failed"):
        table.add_column(column, justify="right")
    for row in results["overhead"]:
        table.add_row(
            str(row["concurrency"]),
            str(row["requests"]),
            f"{row['rate']:.1f}",
            f"{row['ideal']:.0f}",
            f"[bold]{row['ratio']:.3f}[/bold]",
            str(row["failed"]),
        )
    console.print(table)

    results["generation"] = generation(args.model, repeats, max_tokens)
    results["choice_prefix"] = choice_prefix(args.model, repeats)
    results["grammar"] = grammar(args.model, repeats, max_tokens)
    table = Table(title=f"2-3. embedded llama.cpp ({args.model})", title_justify="left")
    for column in ("measure", "backend", "reference", "ratio"):
        table.add_column(column, justify="right")
    g, c, j = results["generation"], results["choice_prefix"], results["grammar"]
    table.add_row(
        "generation tokens/s (ref: llama-cpp-python direct)",
        f"{g['backend_tokens_s']:.1f}",
        f"{g['direct_tokens_s']:.1f}",
        f"[bold]{g['ratio']:.3f}[/bold]",
    )
    table.add_row(
        f"yes/no pairs/s, 8 questions on one page of ~{c['prompt_tokens']} tokens (ref: each prompt from scratch)",
        f"{c['backend_pairs_s']:.2f}",
        f"{c['scratch_pairs_s']:.2f}",
        f"[bold]{c['ratio']:.2f}[/bold]",
    )
    table.add_row(
        "generation tokens/s under a JSON schema (ref: the same prompts free)",
        f"{j['schema_tokens_s']:.1f}",
        f"{j['free_tokens_s']:.1f}",
        f"[bold]{j['ratio']:.2f}[/bold]",
    )
    console.print(table)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
