"""A student learns a teacher's judgement: the bundled MiniLM cross-encoder trained on a toy teacher's scores
alone (``targets="teacher"``) ranks a held-out toy set (other topics, other pages) as the teacher does."""

from __future__ import annotations

from collections.abc import Sequence
from itertools import combinations

import pytest

from docrerank.pages.content import PageContent, PageLike
from docrerank.rerankers import CrossEncoderReranker, Reranker
from docrerank.rerankers.base import page_text
from docrerank.training import TrainingGroup, TrainSettings, train

# topic -> (pages, questions: the i-th answered by the i-th page)
TRAIN = {
    "cooking": (
        [
            "Simmer the tomato sauce with garlic and basil for twenty minutes.",
            "Knead the bread dough, let it rise, then bake it at 220 degrees.",
            "Whisk eggs and sugar before folding in the flour for the cake.",
        ],
        ["How long should the tomato sauce simmer?", "At what temperature is the bread baked?",
         "What is whisked before adding flour?"],
    ),
    "astronomy": (
        [
            "Jupiter is the largest planet and has dozens of moons.",
            "A light year is the distance light travels in one year.",
            "The telescope collects light from distant galaxies and nebulae.",
        ],
        ["Which planet is the largest?", "What distance is a light year?", "What does a telescope collect?"],
    ),
    "football": (
        [
            "The striker scored twice in the second half of the match.",
            "A penalty kick is taken from eleven meters in front of the goal.",
            "The goalkeeper may handle the ball inside the penalty area.",
        ],
        ["How many goals did the striker score?", "From how far is a penalty kick taken?",
         "Where may the goalkeeper handle the ball?"],
    ),
    "finance": (
        [
            "The central bank raised interest rates to slow inflation.",
            "Bond prices fall when interest rates rise.",
            "A diversified portfolio spreads risk across many stocks.",
        ],
        ["Why did the central bank raise rates?", "What happens to bond prices when rates rise?",
         "How does a portfolio spread risk?"],
    ),
}  # fmt: skip
HELD_OUT = {
    "gardening": (
        ["Water tomato seedlings in the morning and keep the soil moist.",
         "Prune rose bushes in late winter before new growth starts."],
        ["When should seedlings be watered?", "When are rose bushes pruned?"],
    ),
    "music": (
        ["The orchestra tuned to the oboe before the symphony began.", "A guitar has six strings tuned E A D G B E."],
        ["What does the orchestra tune to?", "How many strings does a guitar have?"],
    ),
}  # fmt: skip
WHERE = {
    text: (topic, i)
    for topic, (pages, questions) in {**TRAIN, **HELD_OUT}.items()
    for texts in (pages, questions)
    for i, text in enumerate(texts)
}


class TopicTeacher(Reranker):
    """The toy teacher: P(True) 0.95 for the page that answers the question, 0.4 for another page on its
    topic, 0.02 for a page on another topic."""

    kind = "toy-topic-teacher"
    uses = frozenset({"text"})

    def score(self, pairs: Sequence[tuple[str, PageLike]]) -> list[float]:
        scores = []
        for query, page in pairs:
            (query_topic, question), (page_topic, answer) = WHERE[query], WHERE[page_text(page)]
            scores.append(
                0.95 if (query_topic, question) == (page_topic, answer) else 0.4 if query_topic == page_topic else 0.02
            )
        return scores


def _teacher_groups(teacher: Reranker) -> list[TrainingGroup]:
    pages = [
        PageContent(text, page_id=f"{topic}{i}") for topic, (texts, _) in TRAIN.items() for i, text in enumerate(texts)
    ]
    groups = []
    for topic, (texts, questions) in TRAIN.items():
        for i, question in enumerate(questions):
            positive = next(p for p in pages if p.text == texts[i])
            negatives = tuple(p for p in pages if p is not positive)
            positive_score, *negative_scores = teacher.score([(question, p) for p in (positive, *negatives)])
            groups.append(
                TrainingGroup(question, positive, topic, (), negatives, positive_score, (), tuple(negative_scores))
            )
    return groups


def _discordant(student: Reranker, teacher: Reranker) -> list[tuple[str, str, str]]:
    """(query, page the teacher prefers, page) wherever the student does not order a held-out pair as the teacher."""
    pages = [text for texts, _ in HELD_OUT.values() for text in texts]
    wrong = []
    for _, questions in HELD_OUT.values():
        for question in questions:
            by_student = dict(zip(pages, student.score([(question, p) for p in pages]), strict=True))
            by_teacher = dict(zip(pages, teacher.score([(question, p) for p in pages]), strict=True))
            for a, b in combinations(pages, 2):
                better, worse = (a, b) if by_teacher[a] > by_teacher[b] else (b, a)
                if by_teacher[a] != by_teacher[b] and by_student[better] <= by_student[worse]:
                    wrong.append((question, better, worse))
    return wrong


@pytest.mark.slow  # ~1 min on 2 busy cores: 12 steps of 4 groups of 5 pairs
@pytest.mark.timeout(600)
def test_a_student_trained_on_teacher_scores_ranks_held_out_topics_as_the_teacher(tmp_path):
    teacher, student = TopicTeacher(), CrossEncoderReranker(max_length=64)
    assert _discordant(student, teacher), "the untrained student already agrees: the test would show nothing"
    settings = TrainSettings(
        targets="teacher", distillation="margin-mse", learning_rate=1e-4, epochs=4, groups_per_batch=4,
        negatives=4, held_out=0, warmup=0, save_steps=1000,
    )  # fmt: skip
    summary = train(student, _teacher_groups(teacher), tmp_path / "student", settings)
    assert summary.steps == 12
    assert _discordant(student, teacher) == []
    assert _discordant(Reranker.load(tmp_path / "student"), teacher) == []
