"""Structured pruning to a compute budget: attention heads and FFN neurons selected together (their costs and
the budget: :mod:`mcap.budget`).

Selection. Given an importance per unit (higher = keep), :func:`select_units` removes units in order of
importance per MAC, lowest first, skipping any unit that would take the removed MACs past the budget. The
removed MACs therefore never exceed ``ratio`` × the total and fall short of it by less than the cheapest unit
still in the model (a neuron, 2·L·d MACs, where any is left). :func:`select_groups` removes heads and whole
groups of FFN neurons in the order of a learned score (:func:`select_learned`: a structured meta-controller's).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from typing import Any

import torch
from torch import nn

from mcap.budget import UnitCosts, neuron_groups, removed_lowest_first, unit_cost_vector
from mcap.errors import McapError
from mcap.ffn import feed_forward_blocks, prune_neurons
from mcap.heads import attention_blocks, head_size, prune_heads
from mcap.score_files import budget_scores_path


@dataclass(frozen=True)
class StructuredSelection:
    """The units to remove: heads as {layer: [original head index]}, neurons as {layer: [position]}."""

    heads: dict[int, list[int]]
    neurons: dict[int, list[int]]
    removed_macs: int
    total_macs: int  # of the encoder before removal

    @property
    def removed_fraction(self) -> float:
        return self.removed_macs / self.total_macs

    def composition(self) -> dict[str, float]:
        """How many heads and FFN neurons go, and their share of the encoder's MACs."""
        return {"removed_heads": sum(map(len, self.heads.values())),
                "removed_ffn_neurons": sum(map(len, self.neurons.values())), "removed_mac_fraction": self.removed_fraction}

    def summary(self, seq_len: int) -> str:
        removed = self.composition()
        return (f"removed {removed['removed_ffn_neurons']} FFN neurons and {removed['removed_heads']} "
                f"heads: {self.removed_fraction:.1%} of the encoder's MACs at {seq_len} tokens")


def select_units(head_scores: torch.Tensor, neuron_scores: list[torch.Tensor], costs: UnitCosts,
                 ratio: float) -> StructuredSelection:
    """Remove the least important units per MAC up to ``ratio`` of the encoder's MACs (never more).

    ``head_scores``: (layers, H) for an unpruned attention (index = original head); ``neuron_scores``:
    one (I_l,) tensor per layer (index = position in the layer).
    """
    if len(neuron_scores) != head_scores.shape[0]:
        raise McapError(f"{head_scores.shape[0]} layers of head scores but {len(neuron_scores)} of neuron scores")
    heads = head_scores.numel()
    scores = torch.cat([head_scores.flatten().double(), *(s.flatten().double() for s in neuron_scores)])  # (units,)
    cost = torch.cat([torch.full((heads,), costs.head, dtype=torch.float64, device=scores.device),
                      torch.full((len(scores) - heads,), costs.neuron, dtype=torch.float64, device=scores.device)])
    removed = removed_lowest_first(scores / cost, cost, ratio)  # ties go to heads, then lower layers
    return StructuredSelection(*_by_layer(removed.nonzero().flatten().tolist(), head_scores.shape[1],
                                          [len(s) for s in neuron_scores]),
                               removed_macs=int(cost[removed].sum()), total_macs=int(cost.sum()))


def select_groups(head_scores: torch.Tensor, group_scores: torch.Tensor, width: int, group_size: int, costs: UnitCosts,
                  ratio: float) -> StructuredSelection:
    """Remove heads and whole FFN neuron groups, lowest score first, up to ``ratio`` of the encoder's MACs.

    ``head_scores``: (layers, H); ``group_scores``: (layers, G), the groups of :func:`neuron_groups` of an unpruned
    FFN of ``width`` neurons. The order is the scores' alone, not per MAC: a learned score (the structured
    meta-controller's, trained with this very rule) already weighs what a unit costs against what it gives.
    """
    layers, heads = head_scores.shape
    groups = neuron_groups(width, group_size)
    if group_scores.shape != (layers, len(groups)):
        raise McapError(f"group scores of shape {tuple(group_scores.shape)}; {layers} layers of {width} FFN neurons in "
                        f"groups of {group_size} need ({layers}, {len(groups)})")
    cost = unit_cost_vector(costs, layers, heads, width, group_size)
    scores = torch.cat([head_scores.flatten(), group_scores.flatten()]).double()
    removed = removed_lowest_first(scores, cost, ratio)
    removed_heads: dict[int, list[int]] = {}
    for unit in removed[:layers * heads].nonzero().flatten().tolist():
        removed_heads.setdefault(unit // heads, []).append(unit % heads)
    removed_neurons: dict[int, list[int]] = {}
    for unit in removed[layers * heads:].nonzero().flatten().tolist():
        layer, group = divmod(unit, len(groups))
        removed_neurons.setdefault(layer, []).extend(groups[group])
    return StructuredSelection(removed_heads, removed_neurons, removed_macs=int(cost[removed].sum()),
                               total_macs=int(cost.sum()))


def select_learned(scores: Mapping[str, Any], width: int, costs: UnitCosts, ratio: float) -> StructuredSelection:
    """:func:`select_groups` on one structured meta-controller's scores as :func:`learned_scores_json` writes them."""
    heads, groups = (torch.tensor(scores[key], device="cpu") for key in ("heads", "neuron_groups"))
    return select_groups(heads, groups, width, scores["neuron_group_size"], costs, ratio)


def learned_scores_json(heads: torch.Tensor, groups: torch.Tensor, group_size: int) -> dict[str, Any]:
    """A structured meta-controller's scores of heads (layers, H) and of neuron groups (layers, G) as JSON."""
    return {"heads": heads.tolist(), "neuron_groups": groups.tolist(), "neuron_group_size": group_size}


def budget_key(ratio: float) -> str:
    """A budget as a key of the scores by budget (``0.1`` → ``"0.1"``)."""
    return f"{ratio:g}"


def read_budget_scores(strategy: str, task: str, ratios: list[float]) -> dict[float, dict[str, Any]]:
    """{budget: scores} for each of ``ratios``, from :func:`budget_scores_path`."""
    path = budget_scores_path(strategy, task)
    if not path.is_file():
        raise McapError(f"{path}: missing; the meta_controller_budgets stage writes it for each strategy of "
                        "'post_prune.learned' and each task of 'tasks'")
    by_budget = json.loads(path.read_text())["by_budget"]
    missing = [ratio for ratio in ratios if budget_key(ratio) not in by_budget]
    if missing:
        raise McapError(f"{path}: no controller trained at the budgets {missing} of 'post_prune.mac_ratios' "
                        f"(trained at {', '.join(by_budget)})")
    return {ratio: by_budget[budget_key(ratio)] for ratio in ratios}


def _by_layer(units: list[int], heads_per_layer: int, widths: list[int]) -> tuple[dict[int, list[int]], dict[int, list[int]]]:
    """Flat unit indices (every head first, then each layer's neurons) as {layer: [index]} for heads and neurons."""
    head_units = len(widths) * heads_per_layer
    starts = [head_units + sum(widths[:layer]) for layer in range(len(widths))]
    heads: dict[int, list[int]] = {}
    neurons: dict[int, list[int]] = {}
    for unit in units:
        if unit < head_units:
            heads.setdefault(unit // heads_per_layer, []).append(unit % heads_per_layer)
        else:
            layer = max(index for index, start in enumerate(starts) if start <= unit)
            neurons.setdefault(layer, []).append(unit - starts[layer])
    return heads, neurons


# --------------------------------------------------------------------------------------------
# Unit statistics: Fisher importance and Gram matrices, in one pass over labelled examples
# --------------------------------------------------------------------------------------------
#
# A mask m on a unit scales its output, so at m = 1 the loss gradient with respect to the mask is the
# unit's output dotted with the loss gradient at that output: for head h, g_h = Σ_t ⟨c_th, ∂L/∂c_th⟩ over
# its context c_th (d_h values per token); for neuron j, g_j = Σ_t a_tj ∂L/∂a_tj. Taken on each example's
# own loss, the Fisher importance (Kwon et al. 2022, Eq. 5, its diagonal) is I = mean over examples of g².


@dataclass(frozen=True)
class UnitStatistics:
    """Per layer: Fisher importance of each head (H_l,) and neuron (I_l,); with ``blocks``, the layer's whole Fisher
    block of its heads (H_l, H_l) and of its neurons (I_l, I_l), mean over examples of g gᵀ (diagonal: the
    importance), which :func:`rearrange_masks` reads."""

    head_fisher: list[torch.Tensor]
    neuron_fisher: list[torch.Tensor]
    examples: int
    head_blocks: list[torch.Tensor] | None = None
    neuron_blocks: list[torch.Tensor] | None = None


@contextmanager
def _unit_outputs(model: nn.Module) -> Iterator[tuple[dict[int, torch.Tensor], dict[int, torch.Tensor]]]:
    """Within the context, keep each layer's head contexts (B, L, H_l·d_h) and FFN activations (B, L, I_l),
    the inputs of its attention output projection and FFN down projection, of the latest forward pass."""
    contexts: dict[int, torch.Tensor] = {}
    activations: dict[int, torch.Tensor] = {}

    def keeper(store: dict[int, torch.Tensor], index: int):
        def hook(module: nn.Module, inputs: tuple[torch.Tensor]) -> None:
            store[index] = inputs[0]
        return hook

    handles = [block.output_projection.register_forward_pre_hook(keeper(contexts, index))
               for index, block in enumerate(attention_blocks(model))]
    handles += [block.down.register_forward_pre_hook(keeper(activations, index))
                for index, block in enumerate(feed_forward_blocks(model))]
    try:
        yield contexts, activations
    finally:
        for handle in handles:
            handle.remove()


def unit_statistics(model: nn.Module, batches: Iterable[dict[str, torch.Tensor]], blocks: bool = False) -> UnitStatistics:
    """Fisher importance of every head and FFN neuron of ``model`` (eval mode: no dropout) over labelled
    ``batches`` (input_ids, attention_mask, labels), with the task loss; with ``blocks``, each layer's Fisher blocks
    too (one (I_l, I_l) float64 matrix per layer: 19 MB at I_l = 1536)."""
    model.eval()
    d_h = head_size(model)
    attention, feed_forward = attention_blocks(model), feed_forward_blocks(model)
    zeros = partial(torch.zeros, dtype=torch.float64, device=next(model.parameters()).device)  # where the gradients are
    head_fisher = [zeros(block.output_projection.in_features // d_h) for block in attention]
    neuron_fisher = [zeros(block.down.in_features) for block in feed_forward]
    head_blocks = [zeros(len(f), len(f)) for f in head_fisher] if blocks else None
    neuron_blocks = [zeros(len(f), len(f)) for f in neuron_fisher] if blocks else None
    examples = 0
    with _unit_outputs(model) as (contexts, activations):
        for batch in batches:
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits  # (B, 2)
            # Summed, not averaged: each example's gradient is then that of its own loss.
            loss = nn.functional.cross_entropy(logits.float(), batch["labels"], reduction="sum")
            outputs = [contexts[index] for index in range(len(attention))] + [activations[index] for index in range(len(feed_forward))]
            differentiable = [output for output in outputs if output.requires_grad]
            gradients = iter(torch.autograd.grad(loss, differentiable, allow_unused=True))
            gradients = [next(gradients) if output.requires_grad else None for output in outputs]
            for index in range(len(attention)):
                context, gradient = contexts[index].detach(), gradients[index]
                if gradient is not None:
                    per_head = (context * gradient).unflatten(-1, (-1, d_h)).sum(dim=(1, 3)).double()  # (B, H_l)
                    head_fisher[index] += per_head.pow(2).sum(0)
                    if blocks:
                        head_blocks[index] += per_head.T @ per_head
            for index in range(len(feed_forward)):
                activation, gradient = activations[index].detach(), gradients[len(attention) + index]
                if gradient is not None:
                    per_neuron = (activation * gradient).sum(dim=1).double()  # (B, I_l)
                    neuron_fisher[index] += per_neuron.pow(2).sum(0)
                    if blocks:
                        neuron_blocks[index] += per_neuron.T @ per_neuron
            examples += len(batch["labels"])
    if not examples:
        raise McapError("unit statistics need at least one example")
    def mean(sums: list[torch.Tensor]) -> list[torch.Tensor]:  # on the CPU, where units are selected
        return [(total / examples).cpu() for total in sums]
    return UnitStatistics(mean(head_fisher), mean(neuron_fisher), examples, mean(head_blocks) if blocks else None,
                          mean(neuron_blocks) if blocks else None)


# --------------------------------------------------------------------------------------------
# Mask rearrangement (Kwon et al. 2022, Sec. 4.2): within each layer, which units go, at the same counts
# --------------------------------------------------------------------------------------------
#
# To second order, removing the units z (z_j = 1 if unit j goes) raises the loss by about ½ zᵀ I z, with I the
# Fisher information of the masks. The selection reads only its diagonal, as if units did not interact. Keeping
# each layer's block of I, I_l = mean over examples of g gᵀ, and as many heads and as many neurons removed per
# layer (so the MACs and shapes do not change), rearrangement lowers zᵀ I_l z = mean over examples of
# (Σ_{j removed} g_j)²: units whose gradients cancel may go together. Kwon et al.'s greedy pass: start from the k
# units of lowest importance; visit the others in increasing importance, each time adding the unit to the removed
# set and dropping from it the unit whose absence leaves the lowest zᵀ I_l z. With c_v = Σ_{j in the set} (I_l)_jv,
# dropping v leaves zᵀ I_l z − 2 c_v + (I_l)_vv, so each step costs one row of I_l. No step raises zᵀ I_l z.


def _rearranged(count: int, block: torch.Tensor) -> list[int]:
    """The ``count`` units that Kwon et al.'s greedy pass removes from a layer with Fisher ``block`` (U, U) (see the
    block comment), ascending."""
    importance = block.diagonal()
    order = torch.argsort(importance, stable=True).tolist()
    chosen = order[:count]
    if count in (0, len(block)):
        return sorted(chosen)
    coupling = block[chosen].sum(0)  # (U,): c_v = Σ_{j in chosen} I_jv
    for unit in order[count:]:
        chosen.append(unit)
        coupling += block[unit]
        candidates = torch.tensor(chosen, device=block.device)
        dropped = chosen.pop(int(torch.argmin(importance[candidates] - 2 * coupling[candidates])))
        coupling -= block[dropped]
    return sorted(chosen)


def rearrange_masks(selection: StructuredSelection, statistics: UnitStatistics) -> StructuredSelection:
    """``selection`` with, in each layer, as many heads and as many neurons removed, chosen again by Kwon et al.'s
    greedy pass on that layer's Fisher blocks (``statistics`` with ``blocks``; see the block comment): the MACs and
    the shapes stay."""
    if statistics.head_blocks is None or statistics.neuron_blocks is None:
        raise McapError("mask rearrangement needs the Fisher blocks: unit_statistics(..., blocks=True)")
    heads = {layer: _rearranged(len(units), statistics.head_blocks[layer]) for layer, units in selection.heads.items()}
    neurons = {layer: _rearranged(len(units), statistics.neuron_blocks[layer])
               for layer, units in selection.neurons.items()}
    return StructuredSelection(heads, neurons, selection.removed_macs, selection.total_macs)


def remove_units(model: nn.Module, selection: StructuredSelection) -> None:
    """Remove ``selection``'s heads and neurons from ``model`` in place, physically."""
    prune_heads(model, selection.heads)
    prune_neurons(model, selection.neurons)
