"""How good a head ranking is for pruning, measured before any fine-tuning (a fast development aid).

Fine-tuning one pruned model takes about 40 s on 2 CPU cores and its MCC moves by several points
with the fine-tuning seed, too slow and too noisy to develop a ranking on. Here, for a ranking
(a strategy's head scores on the unpruned model) and a ratio, the ``floor(ratio × heads)``
lowest-scored heads are masked to 0 (the same function as removing them, see :mod:`mcap.heads`),
the frozen encoder's mean-pooled sentence vectors of train and validation sentences are computed,
and the score is the MCC of a logistic-regression probe's 5-fold cross-validated predictions over
all of them (every sentence is predicted once, by a probe that did not see it: on the CPU default's
300 validation sentences alone, sampling noise was as large as the differences between rankings).

Strategies whose scores depend on the seed (``head_random``, ``head_gradient``'s probe) are
scored once per pruning seed; the others once. A learned strategy's δ depends on the ratio its controller was
trained at: each ratio is scored with the δ trained at it, or at the nearest ratio trained (``scores_ratio`` says
which). Out of sample: the probe's train sentences come after the controllers' pool (the first
``mcap.pool_examples`` of the split, which also hold ``head_gradient``'s importance sentences), so no ranking is
judged on sentences it was learnt from. On the same sentences, each mask also gets the meta-controller's
objective terms at noise 0 (the RDD-KL and the task probe's loss increase), so a controller's masks can be set
against ``head_gradient``'s and random ones on the objective it optimised, out of sample.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from sklearn.metrics import matthews_corrcoef
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from torch import nn

from mcap.controller import rdd_kl, sentence_representations, spearman
from mcap.errors import McapError
from mcap.figures import saved_figure
from mcap.heads import head_layout, masked_heads, removed_head_count
from mcap.probe import TaskProbe, linear_probe
from mcap.strategies import PruneContext, get_strategy
from mcap.strategies.base import HeadStrategy, lowest_heads
from mcap.training import batches_on, make_loader

log = logging.getLogger(__name__)

UNPRUNED = "none"
REFERENCE = "head_gradient"  # the strongest well-known head criterion: every ranking's agreement is measured with it


PROBE_FOLDS = 5


@dataclass(frozen=True)
class ProbeData:
    """The sentences the probe is cross-validated on, as a loader, with their labels, the unpruned model's vectors
    of them and the meta-controller's task probe fitted on those (the baseline of the objective's terms)."""

    loader: object  # DataLoader
    labels: np.ndarray  # (N,)
    original: torch.Tensor  # (N, d)
    task_probe: TaskProbe
    original_task_loss: float  # the probe's cross-entropy on ``original``: the task term's zero


def keep_mask(scores: torch.Tensor, ratio: float) -> torch.Tensor:
    """(layers, heads) 1/0 mask that drops the ``floor(ratio × heads)`` lowest-scored heads (global ranking)."""
    mask = torch.ones_like(scores, dtype=torch.float32)
    for layer, heads in lowest_heads(scores, removed_head_count(ratio, scores.numel())).items():
        mask[layer, heads] = 0.0
    return mask


@torch.inference_mode()
def sentence_vectors(model: nn.Module, loader, mask: torch.Tensor) -> np.ndarray:
    """Mean-pooled last hidden states of the encoder with ``mask`` applied: (N, d)."""
    device = next(model.parameters()).device
    with masked_heads(model, mask.to(device)):
        vectors = [sentence_representations(model, batch["input_ids"], batch["attention_mask"]).float().cpu()
                   for batch in batches_on(loader, device)]
    return torch.cat(vectors).numpy()


def probe_mcc(vectors: np.ndarray, labels: np.ndarray) -> float:
    """MCC of :func:`mcap.probe.linear_probe`'s cross-validated predictions (seeded folds)."""
    folds = StratifiedKFold(n_splits=PROBE_FOLDS, shuffle=True, random_state=0)
    return float(matthews_corrcoef(labels, cross_val_predict(linear_probe(), vectors, labels, cv=folds)))


def objective_terms(vectors: torch.Tensor, data: ProbeData, episode_size: int) -> dict[str, float]:
    """The meta-controller's objective terms for one mask at noise 0, on the probe sentences (out of its pool):
    ``kl``, the RDD-KL of the masked vectors against the unpruned ones, summed within episodes of ``episode_size``
    sentences as in training and averaged over the episodes; ``task_loss``, the task probe's cross-entropy on the
    masked vectors minus on the unpruned ones (:func:`mcap.controller.episode_losses`)."""
    episodes = np.array_split(np.arange(len(vectors)), max(1, -(-len(vectors) // episode_size)))
    kl = float(np.mean([float(rdd_kl(data.original[index], vectors[index])) for index in episodes if len(index) > 1]))
    task = float(F.cross_entropy(data.task_probe(vectors), torch.as_tensor(data.labels))) - data.original_task_loss
    return {"kl": kl, "task_loss": task}


def mask_scores(model: nn.Module, data: ProbeData, mask: torch.Tensor, episode_size: int) -> dict[str, float]:
    """A mask's probe MCC (``score``) and its objective terms (:func:`objective_terms`)."""
    vectors = sentence_vectors(model, data.loader, mask)
    return {"score": probe_mcc(vectors, data.labels), **objective_terms(torch.as_tensor(vectors), data, episode_size)}


def probe_data(context: PruneContext, validation: pd.DataFrame, train_examples: int, pooled: int) -> ProbeData:
    """At most ``train_examples`` train sentences after the first ``pooled`` (the controllers' pool), and the
    validation split."""
    frame = pd.concat([context.train.iloc[pooled:pooled + train_examples], validation], ignore_index=True)
    smallest = int(frame["label"].value_counts().min()) if frame["label"].nunique() > 1 else 0
    if smallest < PROBE_FOLDS:
        raise McapError(f"ranking@{context.task}: the probe's {len(frame)} sentences ({len(frame) - len(validation)} "
                        f"train sentences after the controllers' pool of {pooled}, mcap.pool_examples, and the "
                        f"validation split) hold {smallest} of their rarest class; its {PROBE_FOLDS}-fold "
                        "cross-validation needs at least that many of each: lower mcap.pool_examples or raise "
                        "ranking.train_examples or the data caps")
    log.info("%s: the probe is cross-validated on %d sentences (%d train sentences after the first %d, and the "
             "validation split)", context.task, len(frame), len(frame) - len(validation), pooled)
    loader, labels = make_loader(context.tokenizer, frame, context.batch_size, context.max_seq_len), frame["label"]
    layout = head_layout(context.model)
    original = torch.as_tensor(sentence_vectors(context.model, loader, torch.ones(len(layout), len(layout[0]))))
    targets = torch.as_tensor(labels.to_numpy())
    probe = TaskProbe.fit(original, targets)
    return ProbeData(loader, labels.to_numpy(), original, probe, float(F.cross_entropy(probe(original), targets)))


def head_scores(strategy: str, context: PruneContext, seed: int, learned: dict[str, Any]) -> torch.Tensor:
    """(layers, heads) scores of ``strategy`` on the unpruned ``context.model`` with pruning seed ``seed`` (a learned
    strategy: its controller of that seed, from ``learned``: {seed: scores})."""
    context.seed, context.learned = seed, learned.get(str(seed))
    return get_strategy(strategy).seeded_scores(context)


ANY_RATIO = None  # the key of the scores of a strategy whose ranking does not depend on the ratio
RankingScores = dict[str, dict[float | None, dict[int, torch.Tensor]]]  # strategy -> ratio trained at -> seed -> (L, H)


def ranking_scores(context: PruneContext, strategies: list[str], seeds: list[int],
                   learned: dict[str, dict[float, dict[str, Any]]]) -> RankingScores:
    """Each head strategy's (layers, heads) scores on the unpruned model, per pruning seed for the strategies that
    draw from it (``Strategy.seeded``), else for ``seeds[0]`` alone; ``learned``: {strategy: {ratio: {seed: scores}}}
    of the learned ones, whose rankings are kept per ratio their controllers were trained at (the others' under
    :data:`ANY_RATIO`)."""
    by_strategy: RankingScores = {}
    for strategy in strategies:
        if not isinstance(get_strategy(strategy), HeadStrategy):
            continue
        for ratio, by_seed in learned.get(strategy, {ANY_RATIO: {}}).items():
            by_strategy.setdefault(strategy, {})[ratio] = {
                seed: head_scores(strategy, context, seed, by_seed)
                for seed in (seeds if get_strategy(strategy).seeded else seeds[:1])}
    return by_strategy


def scores_for_ratio(by_ratio: dict[float | None, dict[int, torch.Tensor]], ratio: float
                     ) -> tuple[float | None, dict[int, torch.Tensor]]:
    """(the ratio whose scores rank heads at ``ratio``, those scores by seed): a learned strategy's trained at
    ``ratio``, else at the nearest ratio trained (the lower of two as near); the others' whatever the ratio."""
    if ANY_RATIO in by_ratio:
        return ANY_RATIO, by_ratio[ANY_RATIO]
    trained = min(by_ratio, key=lambda candidate: (abs(candidate - ratio), candidate))
    return trained, by_ratio[trained]


def rank_points(context: PruneContext, validation: pd.DataFrame, scores: RankingScores, ratios: list[float],
                train_examples: int, first_seed: int, pooled: int = 0, episode_size: int = 60) -> pd.DataFrame:
    """One row (task, strategy, ratio, seed, scores_ratio, score, kl, task_loss) per head strategy of ``scores``
    (:func:`ranking_scores`), ratio and seed: its probe MCC and the meta-controller's objective terms at noise 0
    (:func:`mask_scores`, episodes of ``episode_size`` sentences); ``scores_ratio`` the ratio a learned strategy's
    controller was trained at (:func:`scores_for_ratio`; NaN for the others); plus the unpruned model (ratio 0,
    labelled with ``first_seed``) as the reference. The probe sees no train sentence among the first ``pooled``."""
    data = probe_data(context, validation, train_examples, pooled)
    layout = head_layout(context.model)
    rows = [{"task": context.task, "strategy": UNPRUNED, "ratio": 0.0, "seed": first_seed, "scores_ratio": np.nan,
             **mask_scores(context.model, data, torch.ones(len(layout), len(layout[0])), episode_size)}]
    for strategy, by_ratio in scores.items():
        for ratio in ratios:
            trained, by_seed = scores_for_ratio(by_ratio, ratio)
            for seed, strategy_scores in by_seed.items():
                rows.append({"task": context.task, "strategy": strategy, "ratio": float(ratio), "seed": seed,
                             "scores_ratio": np.nan if trained is ANY_RATIO else float(trained),
                             **mask_scores(context.model, data, keep_mask(strategy_scores, ratio), episode_size)})
            log.info("%s %s at %g: %s", context.task, strategy, ratio, ", ".join(
                f"seed {row['seed']} → MCC {row['score']:.3f}, KL {row['kl']:.4f}, task {row['task_loss']:+.4f}"
                for row in rows[-len(by_seed):]))
    return pd.DataFrame(rows)


def reference_agreement(scores: RankingScores, seed: int, reference: str = REFERENCE) -> dict[str, float]:
    """Spearman correlation of each head strategy's scores with ``reference``'s, both at pruning seed ``seed`` (or
    their only scores, for a strategy whose scores do not depend on the seed), a learned strategy's from its
    controller of the lowest ratio trained; {} where ``reference`` did not run."""
    if reference not in scores:
        return {}

    def at_seed(by_ratio: dict[float | None, dict[int, torch.Tensor]]) -> torch.Tensor:
        by_seed = by_ratio[ANY_RATIO] if ANY_RATIO in by_ratio else by_ratio[min(by_ratio)]
        return by_seed.get(seed, next(iter(by_seed.values())))

    return {strategy: spearman(at_seed(by_ratio).numpy(), at_seed(scores[reference]).numpy())
            for strategy, by_ratio in scores.items() if strategy != reference}


def plot_ranking(points: pd.DataFrame, path) -> None:
    """Per task: probe MCC against the ratio, mean ± std over pruning seeds, the unpruned score as a line."""
    tasks = list(dict.fromkeys(points["task"]))
    with saved_figure(path, 1, len(tasks), figsize=(5.5 * len(tasks), 3.8), squeeze=False) as (_fig, axes):
        for ax, task in zip(axes[0], tasks):
            frame = points[points["task"] == task]
            for strategy, group in frame[frame["strategy"] != UNPRUNED].groupby("strategy", sort=False):
                summary = group.groupby("ratio")["score"].agg(["mean", "std"]).fillna(0.0)
                ax.errorbar(summary.index, summary["mean"], yerr=summary["std"], marker="o", capsize=2, label=strategy)
            ax.axhline(frame[frame["strategy"] == UNPRUNED]["score"].iloc[0], color="gray", linestyle=":",
                       label="unpruned")
            ax.set(title=f"{task}: linear-probe MCC of the pruned, frozen encoder", xlabel="heads removed (ratio)",
                   ylabel="cross-validated probe MCC")
            ax.legend(fontsize=7)
