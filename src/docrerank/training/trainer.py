"""``train``: fit a reranker on training groups with the trainers of transformers and sentence-transformers.

The cross-encoder goes through sentence-transformers' ``CrossEncoderTrainer``, the True/False VLM or causal
LM through transformers' ``Trainer``, both with a loss of ``training.losses`` over whole groups (a row of the
training set is one group, so a positive and its negatives always share a batch: 8 groups of 1 + 3 make the
paper's 8 positives + 24 negatives); a bi-encoder through ``SentenceTransformerTrainer`` with rows and a loss
of its own (``training.bi_encoder``). All with linear warm-up then linear decay, checkpoints every ``save_steps`` in
``OUT/checkpoints`` (a rerun with the same ``OUT`` resumes from the last one), the trainers' progress bar,
and the held-out evaluator run before training, every ``eval_steps`` and at the end
(``OUT/evaluations.jsonl``). Launched under ``torchrun`` / ``accelerate launch`` the trainers run data
parallel (gloo on CPU, NCCL on GPUs); only the main process evaluates and saves.

The targets (``targets``) are the hard labels (the loss ``loss``), a teacher's scores (``docrerank label``:
the distillation loss ``distillation``, MSE on the teacher's logits or margin-MSE), or both (their sum, the
distillation weighted ``teacher_weight``); see ``training.losses``.

``OUT`` ends up holding the trained reranker (``Reranker.load(OUT)``) and ``training.json``: settings, data
counts, the held-out metrics before and after, steps and examples per second.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from docrerank.errors import DocrerankError, import_optional
from docrerank.rerankers.base import Reranker
from docrerank.retrieval.registry import FIRST_STAGE
from docrerank.training.bi_encoder import bi_encoder_trainer
from docrerank.training.bi_encoder import trainer_options as bi_encoder_options
from docrerank.training.data import TrainingGroup, split_by_document
from docrerank.training.evaluator import HeldOutEvaluator
from docrerank.training.fusion import FUSION_LEARNING_RATE, FusionTrainer
from docrerank.training.guard import BenchmarkGuard, GuardResult, compare
from docrerank.training.losses import distillation_loss, group_loss

__all__ = ["TrainSettings", "TrainSummary", "batch_loss", "train"]

log = logging.getLogger(__name__)
CHECKPOINTS = "checkpoints"
EVALUATIONS = "evaluations.jsonl"
SUMMARY = "training.json"
GUARD_START = "guard-start.json"  # the untrained start's per-query nDCG@5 on the guard benchmark (for a resume)
REJECTED = "rejected-model"  # where a model that failed --require-improvement is kept instead of OUT
LEARNING_RATE = 1e-4  # the paper's, for a model whose scoring head starts untrained
BI_ENCODER_LEARNING_RATE = 2e-5  # a bi-encoder already ranks: adapted gently (sentence-transformers' usual range)


class TrainSettings(BaseModel):
    """How to train; the defaults are the paper's (lr 1e-4, 1 epoch, 8 positives + 24 negatives a batch)."""

    model_config = ConfigDict(extra="forbid")

    targets: Literal["hard", "teacher", "both"] = Field(
        "hard", description="learn the hard labels, the teacher's scores (docrerank label), or both"
    )
    loss: Literal["paper", "bce", "listwise"] = "paper"
    pos_weight: float = Field(3.0, gt=0, description="weight of positives in the paper's loss")
    distillation: Literal["mse", "margin-mse"] = Field("margin-mse", description="loss on the teacher's scores")
    teacher_weight: float = Field(1.0, gt=0, description="weight of the distillation loss with targets both")
    learning_rate: float | None = Field(
        None,
        gt=0,
        description="peak learning rate (default: the paper's 1e-4; 2e-5 for a bi-encoder, trained already; 0.05 "
        "for a fusion's few weights)",
    )
    warmup: float = Field(0.1, ge=0, description="warm-up steps, or a share of all steps when below 1")
    epochs: float = Field(1.0, gt=0)
    max_steps: int = Field(-1, description="stop after this many steps (-1: the epochs decide)")
    groups_per_batch: int = Field(8, ge=1, description="positives a batch (each with its negatives), per device")
    negatives: int = Field(3, ge=1, description="negatives a positive brings, drawn from both kinds (seeded)")
    regularization: float = Field(
        0.0, ge=0, description="a fusion's L2 pull of its weights toward its untrained start, the bi-encoder alone"
    )
    held_out: float = Field(0.1, ge=0, lt=1, description="share of documents kept out for evaluation")
    depth: int = Field(20, ge=2, description="candidates a held-out query is ranked among")
    eval_steps: int = Field(0, ge=0, description="evaluate every N steps (0: before and after only)")
    save_steps: int = Field(100, ge=1, description="checkpoint every N steps")
    seed: int = 0
    first_stage: str = Field(
        FIRST_STAGE, description="the retriever whose order the guard compares with (held-out and benchmark)"
    )
    require_improvement: bool = Field(
        False, description="save the model only if it beats the first stage and its untrained start everywhere"
    )


class TrainSummary(BaseModel):
    train_groups: int
    held_out_groups: int
    held_out_documents: list[str]
    processes: int
    steps: int
    seconds: float
    examples_per_second: float
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    resumed_from: str | None
    guard: list[GuardResult] = []
    saved_to: str | None = None  # OUT, or OUT/rejected-model when --require-improvement refused it

    @property
    def improved(self) -> bool:
        """Whether the model beats both baselines on every source of the guard (False when nothing guards it)."""
        return bool(self.guard) and all(result.improves for result in self.guard)


def _arguments(settings: TrainSettings, out: Path, kind: str, **extra):
    """The trainer's arguments: the transformers class, or sentence-transformers' for its two kinds of model."""
    import torch

    transformers = import_optional("transformers", "train")
    cls = transformers.TrainingArguments
    if kind == "cross-encoder":
        cls = import_optional("sentence_transformers", "train").cross_encoder.CrossEncoderTrainingArguments
    elif kind == "bi-encoder":
        cls = import_optional("sentence_transformers", "train").SentenceTransformerTrainingArguments
    cpu = not torch.cuda.is_available()
    options = dict(
        output_dir=str(out / CHECKPOINTS),
        per_device_train_batch_size=settings.groups_per_batch,
        learning_rate=settings.learning_rate,
        warmup_steps=settings.warmup,
        lr_scheduler_type="linear",
        num_train_epochs=settings.epochs,
        max_steps=settings.max_steps,
        save_strategy="steps",
        save_steps=settings.save_steps,
        save_total_limit=2,
        logging_steps=max(1, min(10, settings.save_steps)),
        seed=settings.seed,
        data_seed=settings.seed,
        use_cpu=cpu,
        ddp_backend="gloo" if cpu and int(os.environ.get("WORLD_SIZE", "1")) > 1 else None,
        ddp_find_unused_parameters=False,
        remove_unused_columns=False,
        report_to="none",
        dataloader_num_workers=0,
        bf16=not cpu and torch.cuda.is_bf16_supported(),
    )
    return cls(**(options | extra))


class _Evaluations:
    """Runs the held-out evaluator on the main process and appends each result to evaluations.jsonl."""

    def __init__(self, evaluator: HeldOutEvaluator | None, reranker: Reranker, path: Path):
        self.evaluator, self.reranker, self.path = evaluator, reranker, path

    def __call__(self, step: int) -> dict[str, Any] | None:
        if self.evaluator is None:
            return None
        result = {"step": step, **self.evaluator(self.reranker)}
        with self.path.open("a") as handle:
            handle.write(json.dumps(result) + "\n")
        log.info("held-out evaluation at step %d: %s", step, result)
        return result

    def first(self) -> dict[str, Any] | None:
        """The evaluation before training, from an earlier (killed) run when there is one."""
        if self.path.is_file():
            for line in self.path.read_text().splitlines():
                if line.strip() and json.loads(line)["step"] == 0:
                    return json.loads(line)
        return self(0)


def _callback(evaluations: _Evaluations, every: int):
    transformers = import_optional("transformers", "train")

    class EvaluationCallback(transformers.TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if every and state.is_world_process_zero and state.global_step % every == 0:
                evaluations(state.global_step)

    return EvaluationCallback()


def batch_loss(margins, labels, teachers, group_sizes: list[int], settings: TrainSettings):
    """The loss of a batch for the settings' targets: ``group_loss`` on the hard labels, ``distillation_loss``
    on the teacher's scores (None or nan where a pair has none), or their sum."""
    if settings.targets == "hard":
        return group_loss(margins, labels, group_sizes, settings.loss, settings.pos_weight)
    soft = distillation_loss(margins, teachers, group_sizes, settings.distillation)
    if settings.targets == "teacher":
        return soft
    return group_loss(margins, labels, group_sizes, settings.loss, settings.pos_weight) + settings.teacher_weight * soft


def _cross_encoder_trainer(reranker, rows: list, settings: TrainSettings, out: Path, callbacks: list):
    import torch
    from torch import nn

    sentence_transformers = import_optional("sentence_transformers", "train")
    datasets = import_optional("datasets", "data")
    # the model card cannot show list-valued example rows and says so at every checkpoint; it is still written
    logging.getLogger("sentence_transformers.base.model_card").setLevel(logging.ERROR)

    class GroupLoss(nn.Module):
        """``batch_loss`` over the best-chunk logits of every pair of the batch's groups."""

        def __init__(self, model):
            super().__init__()
            self.model = model  # the trainer swaps in its DDP-wrapped model

        def forward(self, inputs, labels, prompt=None, task=None):
            queries, texts, teachers = inputs
            pairs = [pair for group in zip(queries, texts, strict=True) for pair in zip(*group, strict=True)]
            margins = reranker.margins(pairs, model=self.model)
            flat_teachers = [score for group in teachers for score in group]
            return batch_loss(margins, torch.cat(labels), flat_teachers, [len(q) for q in queries], settings)

    nan = float("nan")
    data = datasets.Dataset.from_dict(
        {
            "queries": [[q for q, _, _, _ in row] for row in rows],
            "texts": [[p.text for _, p, _, _ in row] for row in rows],
            "teachers": [[nan if t is None else t for _, _, _, t in row] for row in rows],
            "label": [[label for _, _, label, _ in row] for row in rows],
        }
    )
    return sentence_transformers.cross_encoder.CrossEncoderTrainer(
        model=reranker.model,
        args=_arguments(settings, out, "cross-encoder"),
        train_dataset=data,
        loss=GroupLoss(reranker.model),
        callbacks=callbacks,
    )


def _true_false_trainer(reranker, rows: list, settings: TrainSettings, out: Path, callbacks: list):
    import torch

    transformers = import_optional("transformers", "train")

    class GroupTrainer(transformers.Trainer):
        """``batch_loss`` over the True/False margins, computed by the reranker's own scoring function."""

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            groups = inputs["groups"]
            pairs = [(query, page) for group in groups for query, page, _, _ in group]
            labels = torch.tensor([label for group in groups for _, _, label, _ in group])
            teachers = [teacher for group in groups for _, _, _, teacher in group]
            batch = {k: v.to(self.args.device) for k, v in reranker.encode(pairs).items()}
            margins = reranker.margins(batch, model=model).float()
            loss = batch_loss(margins, labels, teachers, [len(g) for g in groups], settings)
            return (loss, {}) if return_outputs else loss

    return GroupTrainer(
        model=reranker.add_lora() if not reranker.has_lora else reranker.model,
        args=_arguments(settings, out, "true-false"),
        train_dataset=rows,
        data_collator=lambda features: {"groups": features},
        callbacks=callbacks,
    )


def _without_per_query(result: dict[str, Any] | None) -> dict[str, Any] | None:
    return None if result is None else {k: v for k, v in result.items() if k != "per_query"}


def _benchmark_start(guard: BenchmarkGuard, reranker: Reranker, out: Path) -> dict[str, float]:
    """The untrained start's per-query nDCG@5 on the guard benchmark: measured before training, kept in
    OUT for a resumed run (whose model is no longer the start)."""
    path = out / GUARD_START
    if path.is_file():
        return json.loads(path.read_text())
    values = guard(reranker)
    path.write_text(json.dumps(values) + "\n")
    return values


def train(
    reranker: Reranker,
    groups: list[TrainingGroup],
    out: str | Path,
    settings: TrainSettings | None = None,
    guard_benchmark: BenchmarkGuard | None = None,
) -> TrainSummary:
    """Train ``reranker`` in place on ``groups`` (a held-out share of documents kept for evaluation) and save
    it into ``out``; resume from ``out``'s last checkpoint when there is one. The guard compares the result
    with the first stage and the untrained start on the held-out documents and on ``guard_benchmark``."""
    settings = settings or TrainSettings()
    if settings.regularization and reranker.kind != "fusion":
        raise DocrerankError(f"--regularization pulls a fusion's weights; a {reranker.kind} has none: leave it at 0")
    if settings.learning_rate is None:  # the student's default, resolved once: training.json records it
        defaults = {"bi-encoder": BI_ENCODER_LEARNING_RATE, "fusion": FUSION_LEARNING_RATE}
        default = defaults.get(reranker.kind, LEARNING_RATE)
        settings = settings.model_copy(update={"learning_rate": default})
    transformers = import_optional("transformers", "train")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    train_groups, held_out = split_by_document(groups, settings.held_out, settings.seed)
    if not train_groups:
        raise DocrerankError("no training groups are left after the held-out split: lower --held-out")
    if settings.targets != "hard" and not any(g.has_teacher_scores for g in train_groups):
        raise DocrerankError(
            f"--targets {settings.targets} needs teacher scores and the training groups hold none: score the data "
            "with `docrerank label --teacher CONFIG --data DATA --out LABELED` and train on LABELED"
        )
    rows = [g.scored_pairs(settings.negatives, settings.seed) for g in train_groups]
    if settings.targets != "hard":
        missing = sum(t is None for row in rows for *_, t in row)
        if missing:
            log.warning("%d of %d training pairs have no teacher score: the distillation loss leaves them out",
                        missing, sum(map(len, rows)))  # fmt: skip
    pairs_per_group = sum(map(len, rows)) / len(rows)
    evaluator = HeldOutEvaluator(held_out, settings.depth, settings.seed) if held_out else None
    evaluations = _Evaluations(evaluator, reranker, out / EVALUATIONS)
    callbacks = [_callback(evaluations, settings.eval_steps)]
    if reranker.kind == "cross-encoder":
        trainer = _cross_encoder_trainer(reranker, rows, settings, out, callbacks)
    elif reranker.kind == "true-false":
        trainer = _true_false_trainer(reranker, rows, settings, out, callbacks)
    elif reranker.kind == "bi-encoder":
        if settings.targets != "hard":
            raise DocrerankError("a bi-encoder learns the hard labels here: train it with --targets hard")
        arguments = _arguments(settings, out, "bi-encoder", **bi_encoder_options(reranker, settings))
        trainer = bi_encoder_trainer(reranker, train_groups, settings, arguments, callbacks)
    elif reranker.kind == "fusion":
        trainer = FusionTrainer(reranker, rows, settings, callbacks)
    else:
        raise DocrerankError(
            f"a {reranker.kind!r} reranker is not trained here: train cross-encoder, bi-encoder, fusion or true-false"
        )
    main = trainer.is_world_process_zero()
    checkpoints = out / CHECKPOINTS
    last = transformers.trainer_utils.get_last_checkpoint(str(checkpoints)) if checkpoints.is_dir() else None
    before = evaluations.first() if main else None
    held_out_first = evaluator.first_stage(settings.first_stage) if main and evaluator is not None else None
    benchmark_start = _benchmark_start(guard_benchmark, reranker, out) if main and guard_benchmark else None
    started = time.perf_counter()
    result = trainer.train(resume_from_checkpoint=last)
    seconds = time.perf_counter() - started
    after = evaluations(result.global_step) if main else None
    guard = []
    if held_out_first is not None and "per_query" in before:  # an evaluations.jsonl of an older version has none
        first = held_out_first["per_query"]
        guard.append(compare("held-out", settings.first_stage, first, before["per_query"], after["per_query"]))
    if main and guard_benchmark is not None:
        name = guard_benchmark.benchmark.name
        first, trained = guard_benchmark.first_stage(), guard_benchmark(reranker)
        guard.append(compare(name, guard_benchmark.first_stage_name, first, benchmark_start, trained))
    summary = TrainSummary(
        train_groups=len(train_groups),
        held_out_groups=len(held_out),
        held_out_documents=sorted({g.doc_id for g in held_out}),
        processes=trainer.args.world_size,
        steps=result.global_step,
        seconds=round(seconds, 2),
        examples_per_second=round(result.metrics.get("train_samples_per_second", 0.0) * pairs_per_group, 2),
        before=_without_per_query(before),
        after=_without_per_query(after),
        resumed_from=last,
        guard=guard,
    )
    if main:
        refused = settings.require_improvement and not summary.improved
        summary.saved_to = str(out / REJECTED if refused else out)
        reranker.save(summary.saved_to)
        document = {"settings": settings.model_dump(), **summary.model_dump(), "improved": summary.improved}
        (out / SUMMARY).write_text(json.dumps(document, indent=2) + "\n")
    return summary
