"""The interface every pruning strategy implements, and the registry that finds them by name.

A strategy receives the pre-trained model (with a seeded, untrained 2-class head) before any
fine-tuning and prunes it in place. Head strategies only score heads (higher = more
important); the shared code removes the a ratio of ``prune.ratios`` fraction of all heads with the lowest
scores (global ranking, paper Eq. 1) physically. Unstructured strategies zero the
a ratio of ``prune.ratios`` fraction of encoder Linear weights. Structured strategies remove heads and FFN
neurons together, up to the a ratio of ``prune.ratios`` fraction of the encoder's MACs.
"""

from __future__ import annotations

import importlib
import logging
import math
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import pandas as pd
import torch
from torch import nn
from torch.nn.utils import prune as torch_prune
from tqdm.auto import tqdm

from mcap.errors import McapError
from mcap.heads import attention_probabilities, head_layout, prune_heads, removed_head_count
from mcap.modeling import encoder_linears
from mcap.params import Params, PruneSettings, TrainSettings
from mcap.training import adamw, batches_on, make_accelerator, make_loader, optimizer_with_schedule, train_step

log = logging.getLogger(__name__)


@dataclass
class PruneContext:
    """Everything a strategy may use. ``settings`` is the ``prune`` section of params.yaml; ``ratio`` and
    ``seed`` are this call's budget and pruning seed; ``learned``: a learned strategy's scores for this task from
    its controller of that seed, which the prune stage reads (or, for a transfer task, infers) for it."""

    model: nn.Module
    tokenizer: Any
    task: str
    train: pd.DataFrame
    ratio: float
    seed: int
    settings: PruneSettings
    max_seq_len: int
    batch_size: int
    learned: Any = None
    training: TrainSettings | None = None  # the fine-tuning settings, for criteria measured after fine-tuning

    @classmethod
    def of(cls, params: Params, model: nn.Module, tokenizer: Any, task: str, train: pd.DataFrame, seed: int,
           ratio: float, learned: Any = None) -> PruneContext:
        """The context a stage builds from params.yaml: the ``prune`` settings and the training section's sequence
        length and batch size."""
        return cls(model=model, tokenizer=tokenizer, task=task, train=train, ratio=ratio, seed=seed,
                   settings=params.prune, max_seq_len=params.train.max_seq_len, batch_size=params.train.batch_size,
                   learned=learned, training=params.train)

    def importance_examples(self) -> pd.DataFrame:
        """The first ``prune.importance_examples`` train sentences (the split is already shuffled)."""
        return self.train.head(self.settings.importance_examples)


@dataclass
class PruneOutcome:
    kind: str  # "none" | "head" | "unstructured" | "structured"
    head_scores: torch.Tensor | None = None  # (layers, heads), higher = more important
    removed_heads: dict[int, list[int]] = field(default_factory=dict)
    weight_sparsity: float | None = None  # fraction of encoder Linear weights that are zero
    notes: list[str] = field(default_factory=list)


class Strategy(ABC):
    name: ClassVar[str]
    kind: ClassVar[str]
    # Its Table I row, numbered as the paper numbers its rows ("6b. …" sits after "6. …"); the prune stage
    # records it with the model, so the reports label rows without importing any strategy.
    label: ClassVar[str]
    # Whether the pruning seed changes what it removes (a random draw, a probe's training, a controller). One that
    # draws nothing runs at the first pruning seed only: its other seeds would repeat it bit for bit.
    seeded: ClassVar[bool] = True

    @abstractmethod
    def apply(self, context: PruneContext) -> PruneOutcome:
        """Prune ``context.model`` in place."""


_REGISTRY: dict[str, type[Strategy]] = {}


def register(cls: type[Strategy]) -> type[Strategy]:
    """Class decorator: make a strategy available under ``cls.name``."""
    _REGISTRY[cls.name] = cls
    return cls


def pruning_seeds(strategy: str, seeds: list[int]) -> list[int]:
    """The pruning seeds ``strategy`` runs at: all of ``seeds`` if it draws from them, else the first."""
    return list(seeds) if get_strategy(strategy).seeded else list(seeds[:1])


def known_strategies() -> list[str]:
    """The strategy modules of this package: a module's name is its strategy's name."""
    return sorted(path.stem for path in Path(__file__).parent.glob("*.py") if path.stem not in ("__init__", "base"))


def get_strategy(name: str) -> Strategy:
    """The strategy ``name``, importing its module on first use."""
    if name not in known_strategies():
        raise McapError(f"params.yaml: unknown pruning strategy {name!r}; known: {', '.join(known_strategies())}")
    importlib.import_module(f"{__package__}.{name}")
    if name not in _REGISTRY:
        raise McapError(f"{__package__}.{name}: defines no strategy named {name!r} (a class with @register and name = {name!r})")
    return _REGISTRY[name]()


# --------------------------------------------------------------------------------------------
# Head strategies
# --------------------------------------------------------------------------------------------


def lowest_heads(scores: torch.Tensor, count: int) -> dict[int, list[int]]:
    """The ``count`` heads with the lowest scores over the whole model, as {layer: [heads]}."""
    flat = scores.flatten()
    order = torch.argsort(flat, stable=True)[:count]  # stable: ties go to the lower index
    removed: dict[int, list[int]] = {}
    for index in sorted(order.tolist()):
        removed.setdefault(index // scores.shape[1], []).append(index % scores.shape[1])
    return removed


class HeadStrategy(Strategy):
    kind = "head"

    @abstractmethod
    def score_heads(self, context: PruneContext) -> torch.Tensor:
        """(layers, heads) importance scores of the unpruned model; higher = keep."""

    def seeded_scores(self, context: PruneContext) -> torch.Tensor:
        """(layers, heads) scores on CPU, with torch's RNG seeded by ``context.seed`` first (for the strategies that
        draw from it), so that scoring outside the prune stage (ranking, controller diagnostics) gives the same."""
        torch.manual_seed(context.seed)
        return self.score_heads(context).detach().float().cpu()

    def apply(self, context: PruneContext) -> PruneOutcome:
        scores = self.seeded_scores(context)
        layers, heads = scores.shape
        count = removed_head_count(context.ratio, layers * heads)
        outcome = PruneOutcome(kind=self.kind, head_scores=scores)
        if count == 0:
            note = f"ratio {context.ratio} removes 0 of {layers * heads} heads: nothing pruned"
            log.warning(note)
            outcome.notes.append(note)
            return outcome
        outcome.removed_heads = lowest_heads(scores, count)
        prune_heads(context.model, outcome.removed_heads)
        log.info("%s removed %d of %d heads; kept per layer: %s", self.name, count, layers * heads,
                 [len(kept) for kept in head_layout(context.model)])
        return outcome


def learned_scores(strategy: str, context: PruneContext) -> Any:
    """The task's scores of the learned ``strategy`` from its controller of seed ``context.seed``."""
    if context.learned is None:
        raise McapError(f"{strategy}: no controller scores for {context.task!r} at ratio {context.ratio}; the prune "
                        "stage reads them from the strategy's controller stage")
    return context.learned


class LearnedStrategy(Strategy):
    """A strategy whose scores a stage upstream of pruning learned (a meta-controller), per ratio, task and seed: the
    prune stage gives it the scores of the controller whose seed is the pruning seed (:func:`learned_scores`)."""


class LearnedHeadStrategy(LearnedStrategy, HeadStrategy):
    """Head scores learned upstream (:class:`LearnedStrategy`)."""

    def score_heads(self, context: PruneContext) -> torch.Tensor:
        return torch.tensor(learned_scores(self.name, context), device="cpu")  # selected on the CPU


def mean_attention_statistic(
    context: PruneContext, per_query: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
) -> torch.Tensor:
    """Average ``per_query(probs, batch)`` over the real (non-padding) query positions of the importance examples.

    ``probs`` is one layer's attention, (B, H, L, L); ``per_query`` returns (B, H, L).
    Returns (layers, heads).
    """
    model = context.model.eval()
    loader = make_loader(context.tokenizer, context.importance_examples(), context.batch_size, context.max_seq_len)
    totals, count = None, 0.0
    with torch.no_grad():
        for batch in batches_on(loader, next(model.parameters()).device):
            query_mask = batch["attention_mask"].float()  # (B, L)
            layers = attention_probabilities(model, batch["input_ids"], batch["attention_mask"])
            values = torch.stack([(per_query(probs, batch) * query_mask[:, None, :]).sum(dim=(0, 2)) for probs in layers])
            totals = values if totals is None else totals + values  # (layers, heads)
            count += float(query_mask.sum())
    return totals / count


def short_training(context: PruneContext, steps: int, learning_rate: float, parameters: list[nn.Parameter]) -> None:
    """``steps`` AdamW steps on shuffled train batches, updating only ``parameters``."""
    model = context.model
    trainable = {id(p) for p in parameters}
    frozen = [p for p in model.parameters() if id(p) not in trainable and p.requires_grad]
    for parameter in frozen:
        parameter.requires_grad_(False)
    _train_steps(context, steps, adamw(parameters, learning_rate), None, "short training")
    for parameter in frozen:
        parameter.requires_grad_(True)


def fine_tune_in_place(context: PruneContext) -> None:
    """Fine-tune every weight of ``context.model`` on the task's train sentences as the finetune stage does
    (``train``'s epochs, weight decay and warm-up, its first learning rate), the batch order drawn from the pruning
    seed; no validation. For criteria measured on a fine-tuned model (Michel et al.'s protocol)."""
    if context.training is None:
        raise McapError("fine_tune_in_place: the prune context carries no training settings (PruneContext.of sets them)")
    settings = context.training
    steps = settings.epochs * math.ceil(len(context.train) / context.batch_size)
    optimizer, scheduler = optimizer_with_schedule(context.model, settings.learning_rates[0], settings, steps)
    _train_steps(context, steps, optimizer, scheduler, "fine-tuning")


def _train_steps(context: PruneContext, steps: int, optimizer, scheduler, description: str) -> None:
    """``steps`` optimiser steps of ``context.model`` on shuffled train batches (the pruning seed's order), with
    ``scheduler`` if given; the model is left in eval mode."""
    model = context.model
    generator = torch.Generator().manual_seed(context.seed)
    loader = make_loader(context.tokenizer, context.train, context.batch_size, context.max_seq_len, True, generator)
    accelerator = make_accelerator()
    prepared, optimizer, loader = accelerator.prepare(model, optimizer, loader)
    model.train()
    done = 0
    with tqdm(total=steps, desc=description, leave=False) as progress:
        while done < steps:
            for batch in loader:
                train_step(prepared, batch, optimizer, scheduler, [], accelerator)
                done += 1
                progress.update()
                if done == steps:
                    break
    accelerator.unwrap_model(prepared, keep_fp32_wrapper=False)  # drop the bf16-autocast forward prepare adds on GPU
    model.eval()


# --------------------------------------------------------------------------------------------
# Unstructured strategies
# --------------------------------------------------------------------------------------------


def encoder_weight_sparsity(model: nn.Module) -> float:
    weights = [linear.weight for _name, linear in encoder_linears(model)]
    return sum(int((w == 0).sum()) for w in weights) / sum(w.numel() for w in weights)


class UnstructuredStrategy(Strategy):
    """Global ``torch.nn.utils.prune`` over all encoder Linear weights, made permanent."""

    kind = "unstructured"
    method: ClassVar[type[torch_prune.BasePruningMethod]]

    def apply(self, context: PruneContext) -> PruneOutcome:
        torch.manual_seed(context.seed)  # random_unstructured draws its mask from torch's RNG
        targets = [(linear, "weight") for _name, linear in encoder_linears(context.model)]
        torch_prune.global_unstructured(targets, pruning_method=self.method, amount=context.ratio)
        for module, name in targets:
            torch_prune.remove(module, name)
        sparsity = encoder_weight_sparsity(context.model)
        log.info("%s: %.1f%% of encoder Linear weights are zero", self.name, 100 * sparsity)
        return PruneOutcome(kind=self.kind, weight_sparsity=sparsity)
