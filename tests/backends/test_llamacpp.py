"""llama.cpp models give meaningful answers, in process and through the real server; llamacpp specifics.

The probes are ones the 0.5B model gets right by a wide margin (P(yes) about 0.9 against 0.5): plain
world knowledge is beyond it, but what a programming language is, and what a short text mentions, is not.
"""

from __future__ import annotations

import pytest

from docrerank.backends import Backend, ChatRequest, ChoiceRequest, Message, SamplingParams, load_backend
from docrerank.backends.bundles import BUNDLES
from docrerank.backends.llamacpp import LlamaCppBackend, LlamaCppConfig
from docrerank.errors import DocrerankError
from tests.backends.conftest import SMALL_BUNDLE, THREADS

LLAMA = {"in-process": "llamacpp_backend", "server": "server_backend"}
YES_NO = Message(role="system", content="Answer with a single word: yes or no.")
TRUE_AND_FALSE = [
    ("Is Python a programming language?", "Is Python a kind of cheese?"),
    (
        "Text: The cat sat on the mat.\nDoes the text mention a cat?",
        "Text: The cat sat on the mat.\nDoes the text mention a rocket?",
    ),
]


@pytest.fixture(params=list(LLAMA))
def llama(request) -> Backend:
    return request.getfixturevalue(LLAMA[request.param])


def ask(question: str, id: str) -> ChoiceRequest:
    return ChoiceRequest(messages=[YES_NO, Message(role="user", content=question)], id=id)


@pytest.mark.slow
def test_a_true_statement_gets_more_yes_than_its_false_twin(llama):
    requests = [
        ask(q, f"{i}-{kind}") for i, pair in enumerate(TRUE_AND_FALSE) for kind, q in zip("tf", pair, strict=True)
    ]
    results = llama.score_choices(requests)

    assert [r.id for r in results] == [r.id for r in requests]
    assert all(r.ok for r in results), [r.error for r in results]
    assert all(r.mass > 0.5 for r in results)  # the model wants to answer yes or no at all
    for (true, false), pair in zip(zip(results[::2], results[1::2], strict=True), TRUE_AND_FALSE, strict=True):
        assert true.prob("yes") > 0.5, pair[0]
        assert true.prob("yes") > false.prob("yes") + 0.15, pair


@pytest.mark.slow
def test_greedy_arithmetic_and_structured_answer(llama):
    question = "What is 2+2? Answer with just the number."
    requests = [
        ChatRequest(messages=[Message(role="user", content=question)], sampling=SamplingParams(max_tokens=8)),
        ChatRequest(
            messages=[Message(role="user", content="What is 2+2? Reply in JSON with the key answer.")],
            sampling=SamplingParams(max_tokens=24),
            json_schema={"type": "object", "properties": {"answer": {"type": "integer"}}, "required": ["answer"]},
        ),
    ]
    plain, structured = llama.generate(requests)

    assert plain.ok and "4" in plain.text, plain
    assert structured.ok and structured.parsed == {"answer": 4}, structured


@pytest.mark.slow
def test_prefix_reuse_between_requests_changes_no_score(llamacpp_backend):
    # llamacpp keeps the evaluated prefix and evaluates only what differs: a request must score the same
    # whatever ran before it (a shared page prefix, another chat, a generation in between). Up to numerics:
    # llama.cpp's sums differ slightly with how a prompt is split into evaluation batches (about 0.02 in
    # probability here), while a wrong prefix gives another question's answer (0.8 against 0.4 below).
    page = "Page: The Chow test checks for a structural break at a known date in a regression model.\n"
    requests = [
        ChoiceRequest(messages=[YES_NO, Message(role="user", content=page + "Is the page about a test?")], id="a"),
        ChoiceRequest(messages=[YES_NO, Message(role="user", content=page + "Is the page about cooking?")], id="b"),
        ask("Is Python a programming language?", "c"),
    ]
    together = llamacpp_backend.score_choices(requests)
    llamacpp_backend.generate([ChatRequest(messages=requests[0].messages, sampling=SamplingParams(max_tokens=4))])
    alone = [llamacpp_backend.score_choices([r])[0] for r in reversed(requests)][::-1]

    assert all(r.ok for r in together + alone)
    for batched, single in zip(together, alone, strict=True):
        assert batched.prob("yes") == pytest.approx(single.prob("yes"), abs=0.05)
    assert together[0].prob("yes") > together[1].prob("yes") + 0.2  # the page is about a test, not cooking


def test_choice_scoring_counts_the_prompt_tokens_it_reads(llamacpp_backend):
    # the verifier's and teacher's main cost: counted in the backend's stats (a run's profile, sizing)
    before = llamacpp_backend.stats.prompt_tokens
    short, long = llamacpp_backend.score_choices(
        [ask("Is it blue?", "tokens-short"), ask("Is Python, a language first released in 1991, typed?", "tokens-long")]
    )
    assert 0 < short.usage.prompt_tokens < long.usage.prompt_tokens
    assert short.usage.completion_tokens == long.usage.completion_tokens == 0
    assert llamacpp_backend.stats.prompt_tokens - before == short.usage.prompt_tokens + long.usage.prompt_tokens


def test_n_threads_holds_for_prompt_evaluation_too(llamacpp_backend):
    # Choice scoring is almost all prompt evaluation, which llama.cpp runs on its "batch" threads.
    llm = llamacpp_backend.llm
    assert llamacpp_backend.config.n_threads == THREADS
    assert llm.n_threads == llm.n_threads_batch == THREADS


def test_an_unknown_model_name_lists_the_bundles():
    backend = load_backend({"type": "llamacpp", "model": "qwen-typo"})
    with pytest.raises(DocrerankError) as raised:
        backend.generate([ChatRequest(messages=[Message(role="user", content="Hi")])])
    assert "qwen-typo" in str(raised.value)
    assert all(name in str(raised.value) for name in BUNDLES)


def test_identity_names_the_weights_not_the_spelling(small_gguf):
    by_bundle = LlamaCppBackend(LlamaCppConfig(model=SMALL_BUNDLE))
    by_path = LlamaCppBackend(LlamaCppConfig(model=str(small_gguf)))
    assert by_bundle.identity()["model"] == f"bundle:{BUNDLES[SMALL_BUNDLE].sha256}"
    assert by_path.identity()["model"].startswith(f"file:{small_gguf.resolve()}:{small_gguf.stat().st_size}:")
    assert by_bundle.identity() != LlamaCppBackend(LlamaCppConfig(model=SMALL_BUNDLE, n_ctx=4096)).identity()
    assert by_bundle.identity() == LlamaCppBackend(LlamaCppConfig(model=SMALL_BUNDLE, n_threads=3)).identity()
    with pytest.raises(ValueError, match="hf_repo and hf_file"):
        LlamaCppConfig(model="", hf_repo="org/repo")


@pytest.mark.slow
def test_a_page_asked_about_again_later_starts_from_its_saved_state(llamacpp_backend):
    # A pipeline asks about a page in several stages with other prompts in between: the page's evaluated
    # state is saved when another prompt replaces it and loaded when the page comes back, scoring the same.
    def about(page: str, question: str) -> ChoiceRequest:
        return ChoiceRequest(messages=[YES_NO, Message(role="user", content=f"Page: {page}\n{question}")], id=question)

    test = "The Chow test checks for a structural break at a known date in a regression model. " * 6
    cooking = "Risotto needs short-grain rice, stock added a ladle at a time, and constant stirring. " * 6
    later = about(test, "Does the page name a test for structural breaks?")
    states = llamacpp_backend.prefix_states
    capacity = states.capacity_bytes
    states.capacity_bytes = 0  # the reference: the page evaluated from scratch
    llamacpp_backend.score_choices([ask("Is Python a programming language?", "other")])
    reference = llamacpp_backend.score_choices([later])[0]
    states.capacity_bytes = capacity

    loaded = states.loaded
    llamacpp_backend.score_choices([about(test, "Is the page about cooking?")])
    llamacpp_backend.score_choices([about(cooking, "Is the page about cooking?")])  # the test page is saved
    llamacpp_backend.generate([ChatRequest(messages=[YES_NO], sampling=SamplingParams(max_tokens=4))])
    again = llamacpp_backend.score_choices([later])[0]

    assert states.loaded == loaded + 1
    assert again.ok and again.prob("yes") == pytest.approx(reference.prob("yes"), abs=0.05)
    assert again.prob("yes") > 0.5
