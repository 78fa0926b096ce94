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


# --------------------------------------------------------------------------------------------
# Mask tuning (Kwon et al. 2022, Sec. 4.3): rescale the survivors, sublayer by sublayer, by least squares
# --------------------------------------------------------------------------------------------
#
# Each sublayer (an attention, then an FFN, per layer) ends in the pre-LayerNorm sum s = x + Σ_j u_j + b: its
# residual input x, the contributions u_j ∈ R^d of its units (head h: W_o[:, h] c_h, neuron j: a_j W_down[:, j])
# and the projection's bias. In order, sublayer by sublayer, the pruned model's survivors get the scales m that
# bring its sum, on its own (already tuned) inputs, closest to the unpruned model's sum s* on the unpruned inputs:
#   min_m Σ_t ‖Σ_j m_j u_tj − r_t‖²,   r_t = s*_t − x_t − b = s*_t − s_t + Σ_j u_tj   (s_t: the pruned sum at m = 1)
# over the tuning sentences' real tokens; its normal equations are G m = Aᵀr with G_jk = Σ_t u_tj · u_tk.
# Through r, each sublayer also corrects the drift its inputs carry from the pruned sublayers before it. In the
# last layer only the [CLS] token reaches the classifier, so only it is reconstructed there.
#
# G and Aᵀr come from the projection's input z_t (F = units · w features; w = d_h for heads, 1 for neurons) and
# weight W (d, F) without forming the (T, units, d) contributions:
#   G = blocksum_w((Σ_t z_t z_tᵀ) ⊙ WᵀW),   Aᵀr = blocksum_w(Σ_t z_t ⊙ (Wᵀ r_t)).


@dataclass(frozen=True)
class _Sublayer:
    """A sublayer's output projection (its input: the units' outputs, ``width`` features per unit) and the
    LayerNorm whose input is its pre-LayerNorm sum."""

    projection: nn.Linear
    layer_norm: nn.Module
    width: int


def _sublayers(model: nn.Module) -> list[_Sublayer]:
    """Attention then FFN of each layer, in the order the forward pass meets them."""
    d_h = head_size(model)
    sublayers = []
    for attention, ffn in zip(attention_blocks(model), feed_forward_blocks(model)):
        sublayers += [_Sublayer(attention.output_projection, attention.layer.attention.output.LayerNorm, d_h),
                      _Sublayer(ffn.down, ffn.layer.output.LayerNorm, 1)]
    return sublayers


class _Captured(Exception):
    """Stops a forward pass once the sublayer being tuned has given its inputs: the rest is not needed."""


def _tokens(batch: dict[str, torch.Tensor], cls_only: bool) -> torch.Tensor:
    """(B, L) bool: the tokens a sublayer is tuned on (the real ones, or only [CLS])."""
    real = batch["attention_mask"].bool()
    if not cls_only:
        return real
    first = torch.zeros_like(real)
    first[:, 0] = True
    return first


def _forward(model: nn.Module, batch: dict[str, torch.Tensor]) -> None:
    try:
        model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    except _Captured:
        pass


@dataclass(frozen=True)
class ReconstructionTargets:
    """What mask tuning reconstructs: the unpruned model's pre-LayerNorm sums on the tuning ``batches``, per
    sublayer, per batch (T_b, d) at the tokens the sublayer is tuned on. Computed once, they serve every budget."""

    batches: list[dict[str, torch.Tensor]]
    sums: list[list[torch.Tensor]]


@torch.no_grad()
def reconstruction_targets(unpruned: nn.Module, batches: Iterable[dict[str, torch.Tensor]]) -> ReconstructionTargets:
    """The targets of :func:`tune_masks` for the models cut from ``unpruned``, on tuning ``batches``
    (input_ids, attention_mask)."""
    batches = list(batches)
    return ReconstructionTargets(batches, _pre_norm_sums(unpruned.eval(), batches))


def _pre_norm_sums(model: nn.Module, batches: list[dict[str, torch.Tensor]]) -> list[list[torch.Tensor]]:
    """Per sublayer, per batch: the pre-LayerNorm sum (T_b, d) at the tokens it is tuned on."""
    sublayers = _sublayers(model)
    latest: dict[int, torch.Tensor] = {}

    def keeper(index: int):
        def hook(module: nn.Module, inputs: tuple[torch.Tensor]) -> None:
            latest[index] = inputs[0]
        return hook

    sums: list[list[torch.Tensor]] = [[] for _ in sublayers]
    handles = [sublayer.layer_norm.register_forward_pre_hook(keeper(index)) for index, sublayer in enumerate(sublayers)]
    try:
        for batch in batches:
            _forward(model, batch)
            for index, per_batch in enumerate(sums):
                per_batch.append(latest[index][_tokens(batch, index >= len(sublayers) - 2)])
    finally:
        for handle in handles:
            handle.remove()
    return sums


@torch.no_grad()
def _normal_equations(model: nn.Module, sublayer: _Sublayer, batches: list[dict[str, torch.Tensor]],
                      targets: list[torch.Tensor], cls_only: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """G (n, n) and Aᵀr (n,) of one sublayer's n units on ``model``'s own inputs (see the block comment)."""
    store: dict[str, torch.Tensor] = {}

    def keep_units(module: nn.Module, inputs: tuple[torch.Tensor]) -> None:
        store["units"] = inputs[0]

    def keep_sum(module: nn.Module, inputs: tuple[torch.Tensor]) -> None:
        store["sum"] = inputs[0]
        raise _Captured

    # Each batch's sums in the model's own precision (float32: a batch holds at most a few thousand tokens), their
    # running totals and G in float64, where the sums over all batches and the products with WᵀW need it.
    weight = sublayer.projection.weight  # (d, F)
    features = weight.shape[1]
    moment = torch.zeros(features, features, dtype=torch.float64, device=weight.device)  # Σ_t z_t z_tᵀ
    projected = torch.zeros(features, dtype=torch.float64, device=weight.device)  # Σ_t z_t ⊙ (Wᵀ r_t)
    handles = [sublayer.projection.register_forward_pre_hook(keep_units),
               sublayer.layer_norm.register_forward_pre_hook(keep_sum)]
    try:
        for batch, target in zip(batches, targets):
            _forward(model, batch)
            tokens = _tokens(batch, cls_only)
            units, pre_norm = store["units"][tokens], store["sum"][tokens]  # (T, F), (T, d)
            residual = target - pre_norm + units @ weight.T  # r_t: (T, d)
            moment += units.T @ units
            projected += (units * (residual @ weight)).sum(0)
    finally:
        for handle in handles:
            handle.remove()
    units, weight = features // sublayer.width, weight.double()
    gram = (moment * (weight.T @ weight)).reshape(units, sublayer.width, units, sublayer.width).sum(dim=(1, 3))
    return gram, projected.reshape(units, sublayer.width).sum(1)


def tune_masks(pruned: nn.Module, targets: ReconstructionTargets, damping: float = 1e-6,
               max_scale: float = 10.0) -> dict[str, int]:
    """Mask tuning of a physically pruned model, in place: each sublayer's surviving heads or neurons are
    rescaled by least squares (see the block comment above), the scales folded into the output and down
    projections' columns, so the tuned model has no masks.

    ``targets``: :func:`reconstruction_targets` of the model ``pruned`` was cut from. ``damping`` is the weight, as a fraction of G's mean diagonal, of a ridge term ‖m − 1‖², so that collinear or
    never-active units get finite scales; a sublayer whose scales are not all finite and within ±``max_scale`` keeps its
    units as they are (Kwon et al. stop there). Returns how many sublayers had units and how many were tuned.
    """
    pruned.eval()
    sublayers = _sublayers(pruned)
    counts = {"sublayers": 0, "tuned": 0}
    for index, sublayer in enumerate(sublayers):
        if not sublayer.projection.in_features:
            continue  # no units left: nothing to scale
        counts["sublayers"] += 1
        gram, rhs = _normal_equations(pruned, sublayer, targets.batches, targets.sums[index],
                                       cls_only=index >= len(sublayers) - 2)
        # The ridge pulls towards 1, not 0: where the tokens leave a direction undetermined, units stay as they are.
        ridge = damping * gram.diagonal().mean().clamp_min(1e-30)
        scales = torch.linalg.solve(gram + ridge * torch.eye(len(gram), dtype=torch.float64, device=gram.device), rhs + ridge)
        if not (scales.isfinite().all() and scales.abs().max() <= max_scale):
            continue
        with torch.no_grad():
            weight = sublayer.projection.weight
            weight.mul_(scales.repeat_interleave(sublayer.width).to(weight))
        counts["tuned"] += 1
    return counts
