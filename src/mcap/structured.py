"""Structured pruning to a compute budget: attention heads and FFN neurons selected together.

Cost. At sequence length L, hidden size d and head size d_h, a unit costs per sequence (in
multiply-accumulates, counted as :func:`mcap.evaluate.encoder_macs` counts them):

* a head:   4·L·d·d_h + 2·L²·d_h  (its Q, K and V rows and output-projection columns; its scores and context)
* a neuron: 2·L·d                 (its row of the FFN's up projection and column of the down one)

A structured strategy's ``prune.ratio`` is the fraction of the encoder's MACs it removes (the
embeddings and the classifier are not encoder MACs).

Selection. Given an importance per unit (higher = keep), units are removed in order of importance
per MAC, lowest first, skipping any unit that would take the removed MACs past the budget. The
removed MACs therefore never exceed ``ratio`` × the total and fall short of it by less than the
cheapest unit still in the model (a neuron, 2·L·d MACs, where any is left).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn

from mcap.errors import McapError
from mcap.ffn import count_neurons, feed_forward_blocks, prune_neurons
from mcap.heads import attention_blocks, count_heads, head_layout, head_size, prune_heads


@dataclass(frozen=True)
class UnitCosts:
    """MACs per sequence of one head and of one FFN neuron, at ``seq_len`` tokens."""

    head: int
    neuron: int
    seq_len: int

    @classmethod
    def of(cls, config, seq_len: int) -> UnitCosts:
        d, length = config.hidden_size, seq_len
        d_h = d // config.num_attention_heads
        return cls(head=4 * length * d * d_h + 2 * length * length * d_h, neuron=2 * length * d, seq_len=seq_len)

    def encoder_macs(self, heads: int, neurons: int) -> int:
        """MACs of an encoder with ``heads`` heads and ``neurons`` FFN neurons in all (the heads' and neurons' own)."""
        return heads * self.head + neurons * self.neuron


def removed_mac_fraction(model: nn.Module, seq_len: int) -> float:
    """The fraction of the unpruned encoder's MACs at ``seq_len`` tokens that ``model``'s removed heads and FFN
    neurons did."""
    config, costs = model.config, UnitCosts.of(model.config, seq_len)
    full = costs.encoder_macs(config.num_hidden_layers * config.num_attention_heads,
                              config.num_hidden_layers * config.intermediate_size)
    return 1 - costs.encoder_macs(count_heads(model), count_neurons(model)) / full


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


def select_units(head_scores: torch.Tensor, neuron_scores: list[torch.Tensor], costs: UnitCosts,
                 ratio: float) -> StructuredSelection:
    """Remove the least important units per MAC up to ``ratio`` of the encoder's MACs (never more).

    ``head_scores``: (layers, H) for an unpruned attention (index = original head); ``neuron_scores``:
    one (I_l,) tensor per layer (index = position in the layer).
    """
    if not 0 <= ratio < 1:
        raise McapError(f"a MAC budget is a fraction in [0, 1), got {ratio!r}")
    if len(neuron_scores) != head_scores.shape[0]:
        raise McapError(f"{head_scores.shape[0]} layers of head scores but {len(neuron_scores)} of neuron scores")
    heads = head_scores.numel()
    scores = torch.cat([head_scores.flatten().double(), *(s.flatten().double() for s in neuron_scores)])  # (units,)
    cost = torch.cat([torch.full((heads,), costs.head, dtype=torch.float64),
                      torch.full((len(scores) - heads,), costs.neuron, dtype=torch.float64)])
    total = int(cost.sum())
    budget = math.floor(ratio * total + 1e-9)
    order = torch.argsort(scores / cost, stable=True).tolist()  # stable: ties go to heads, then lower layers
    removed_macs, removed = 0, []
    for unit in order:
        unit_cost = int(cost[unit])
        if removed_macs + unit_cost <= budget:
            removed.append(unit)
            removed_macs += unit_cost
    return StructuredSelection(*_by_layer(sorted(removed), head_scores.shape[1], [len(s) for s in neuron_scores]),
                               removed_macs=removed_macs, total_macs=total)


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
# Mask tuning (Kwon et al. 2022, Sec. 4.3): rescale the surviving units by least squares
# --------------------------------------------------------------------------------------------
#
# A layer's FFN (or attention) output is a sum of unit contributions, y_t = Σ_j u_tj (u_tj ∈ R^d, token t).
# After removal only the units S remain; scales m_S that best reconstruct the unpruned output solve
#   min_m Σ_t ‖Σ_{j∈S} m_j u_tj − Σ_j u_tj‖²  ⇔  G_SS m = G_S· 1,  with the Gram matrix G_jk = Σ_t u_tj · u_tk,
# so only G (units × units) is ever needed, accumulated batch by batch. For FFN neurons u_tj = a_tj · W_down[:, j],
# hence G = (Σ_t a_t a_tᵀ) ⊙ (W_downᵀ W_down).


def neuron_gram(activation_moment: torch.Tensor, down_weight: torch.Tensor) -> torch.Tensor:
    """G (I, I) of one layer's FFN neurons from Σ_t a_t a_tᵀ (I, I) and the down projection's weight (d, I)."""
    return activation_moment * (down_weight.T @ down_weight)


def least_squares_scales(gram: torch.Tensor, kept: torch.Tensor, damping: float = 1e-6) -> torch.Tensor:
    """Scales of the kept units (in their order) that best reconstruct the sum of all units' contributions.

    ``gram``: (n, n) Gram matrix of the unit contributions; ``kept``: (n,) bool. ``damping`` adds that
    fraction of the mean diagonal to the diagonal, so that units whose contributions are collinear
    (or never active) get finite scales.
    """
    gram = gram.double()
    kept_gram = gram[kept][:, kept]  # (|S|, |S|)
    if not len(kept_gram):
        return torch.zeros(0, dtype=torch.float64)
    target = gram[kept].sum(dim=1)  # (|S|,): G_S· 1
    ridge = damping * kept_gram.diagonal().mean().clamp_min(1e-30)
    return torch.linalg.solve(kept_gram + ridge * torch.eye(len(kept_gram), dtype=torch.float64), target)


def head_gram(contexts: torch.Tensor, output_weight: torch.Tensor, d_h: int) -> torch.Tensor:
    """G (H_l, H_l) of one layer's heads on T tokens: head h contributes W_o[:, h] c_th to the attention output.

    ``contexts``: (T, H_l·d_h), the output projection's input; ``output_weight``: (d, H_l·d_h).
    """
    per_head = contexts.unflatten(-1, (-1, d_h))  # (T, H_l, d_h)
    contributions = torch.einsum("thk,dhk->thd", per_head, output_weight.unflatten(1, (-1, d_h)))  # (T, H_l, d)
    return torch.einsum("thd,tgd->hg", contributions, contributions)


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
    """Per layer: Fisher importance of each head (H_l,) and neuron (I_l,), and the Gram matrices of their
    contributions (H_l, H_l) and (I_l, I_l), summed over the examples' real tokens."""

    head_fisher: list[torch.Tensor]
    neuron_fisher: list[torch.Tensor]
    head_grams: list[torch.Tensor]
    neuron_grams: list[torch.Tensor]
    examples: int


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


def unit_statistics(model: nn.Module, batches: Iterable[dict[str, torch.Tensor]]) -> UnitStatistics:
    """Fisher importance and contribution Gram matrices of every head and FFN neuron of ``model`` (eval
    mode: no dropout) over labelled ``batches`` (input_ids, attention_mask, labels), with the task loss."""
    model.eval()
    d_h = head_size(model)
    attention, feed_forward = attention_blocks(model), feed_forward_blocks(model)
    head_fisher = [torch.zeros(block.output_projection.in_features // d_h, dtype=torch.float64) for block in attention]
    neuron_fisher = [torch.zeros(block.down.in_features, dtype=torch.float64) for block in feed_forward]
    head_grams = [torch.zeros(len(f), len(f), dtype=torch.float64) for f in head_fisher]
    moments = [torch.zeros(len(f), len(f), dtype=torch.float64) for f in neuron_fisher]
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
            real = batch["attention_mask"].bool()  # (B, L): padding contributes to nothing
            for index in range(len(attention)):
                context, gradient = contexts[index].detach(), gradients[index]
                if gradient is not None:
                    per_head = (context * gradient).unflatten(-1, (-1, d_h)).sum(dim=(1, 3))  # (B, H_l)
                    head_fisher[index] += per_head.double().pow(2).sum(0)
                head_grams[index] += head_gram(context[real], attention[index].output_projection.weight.detach(), d_h).double()
            for index in range(len(feed_forward)):
                activation, gradient = activations[index].detach(), gradients[len(attention) + index]
                if gradient is not None:
                    neuron_fisher[index] += (activation * gradient).sum(dim=1).double().pow(2).sum(0)  # (I_l,)
                tokens = activation[real].double()  # (T, I_l)
                moments[index] += tokens.T @ tokens
            examples += len(batch["labels"])
    if not examples:
        raise McapError("unit statistics need at least one example")
    neuron_grams = [neuron_gram(moment, block.down.weight.detach().double()) for moment, block in zip(moments, feed_forward)]
    return UnitStatistics([f / examples for f in head_fisher], [f / examples for f in neuron_fisher],
                          head_grams, neuron_grams, examples)


def remove_units(model: nn.Module, selection: StructuredSelection, statistics: UnitStatistics | None = None) -> None:
    """Remove ``selection``'s heads and neurons from ``model`` in place, physically.

    With ``statistics`` (of this model), mask tuning first: each layer's surviving heads and neurons are
    rescaled by :func:`least_squares_scales` so that they best reconstruct the layer's unpruned attention
    and FFN outputs; the scales are folded into the output and down projections' columns, so the pruned
    model has no masks.
    """
    if statistics is not None:
        d_h = head_size(model)
        layout = head_layout(model)
        with torch.no_grad():
            for index, (block, ffn) in enumerate(zip(attention_blocks(model), feed_forward_blocks(model))):
                kept_heads = torch.tensor([head not in selection.heads.get(index, []) for head in layout[index]])
                head_scales = _full_scales(statistics.head_grams[index], kept_heads)  # (H_l,)
                block.output_projection.weight.mul_(head_scales.repeat_interleave(d_h).to(block.output_projection.weight))
                kept_neurons = torch.ones(ffn.down.in_features, dtype=torch.bool)
                kept_neurons[selection.neurons.get(index, [])] = False
                ffn.down.weight.mul_(_full_scales(statistics.neuron_grams[index], kept_neurons).to(ffn.down.weight))
    prune_heads(model, selection.heads)
    prune_neurons(model, selection.neurons)


def _full_scales(gram: torch.Tensor, kept: torch.Tensor) -> torch.Tensor:
    """One scale per unit: the least-squares scale of a kept unit, 0 for a removed one (it is sliced away)."""
    scales = torch.zeros(len(kept), dtype=torch.float64)
    scales[kept] = least_squares_scales(gram, kept)
    return scales
