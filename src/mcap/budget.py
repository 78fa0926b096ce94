"""What heads and FFN neurons cost, and how a budget of removed MACs is filled.

At sequence length L, hidden size d and head size d_h, a unit costs per sequence (in multiply-accumulates,
counted as :func:`mcap.evaluate.encoder_macs` counts them):

* a head:   4·L·d·d_h + 2·L²·d_h  (its Q, K and V rows and output-projection columns; its scores and context)
* a neuron: 2·L·d                 (its row of the FFN's up projection and column of the down one)

A structured strategy's a ratio of ``prune.ratios`` is the fraction of the encoder's MACs it removes (the embeddings and
the classifier are not encoder MACs). Units are removed in a given order, each one whose cost still fits in
the budget, so the removed MACs never exceed ``ratio`` × the total.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from mcap.errors import McapError
from mcap.ffn import count_neurons
from mcap.heads import count_heads
from mcap.modeling import unpruned_layers


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
    """The fraction of the unpruned encoder's MACs at ``seq_len`` tokens that ``model``'s removed layers, heads and
    FFN neurons did."""
    config, costs, layers = model.config, UnitCosts.of(model.config, seq_len), unpruned_layers(model.config)
    full = costs.encoder_macs(layers * config.num_attention_heads, layers * config.intermediate_size)
    return 1 - costs.encoder_macs(count_heads(model), count_neurons(model)) / full


def mac_budget(ratio: float, total: int) -> int:
    """The most MACs a budget of ``ratio`` removes from ``total``."""
    if not 0 <= ratio < 1:
        raise McapError(f"a MAC budget is a fraction in [0, 1), got {ratio!r}")
    return math.floor(ratio * total + 1e-9)


def removed_lowest_first(scores: torch.Tensor, cost: torch.Tensor, ratio: float) -> torch.Tensor:
    """(units,) bool: the units removed by a budget of ``ratio`` of ``cost.sum()`` MACs, lowest ``scores`` first.

    Walking the units in increasing score (stable: ties go to the lower index), each one is removed if its
    ``cost`` still fits in the budget and skipped otherwise, so that cheaper units further on may fill it.
    """
    unit_costs = [int(unit_cost) for unit_cost in cost.tolist()]
    budget = mac_budget(ratio, sum(unit_costs))
    removed = [False] * len(unit_costs)
    removed_macs = 0
    for unit in torch.argsort(scores.detach(), stable=True).tolist():
        if removed_macs + unit_costs[unit] <= budget:
            removed[unit] = True
            removed_macs += unit_costs[unit]
    return torch.tensor(removed, dtype=torch.bool, device=scores.device)


def neuron_groups(width: int, group_size: int) -> list[range]:
    """An FFN of ``width`` neurons cut into consecutive groups of ``group_size`` (the last may be smaller)."""
    return [range(start, min(start + group_size, width)) for start in range(0, width, group_size)]


def unit_cost_vector(costs: UnitCosts, layers: int, heads: int, width: int, group_size: int) -> torch.Tensor:
    """(layers·heads + layers·G,) float64: the MACs of every head, then of every FFN neuron group, layer by layer,
    of an unpruned encoder with ``width`` FFN neurons per layer cut into groups of ``group_size``; on the CPU."""
    groups = torch.tensor([len(group) * costs.neuron for group in neuron_groups(width, group_size)],
                          dtype=torch.float64, device="cpu")
    heads = torch.full((layers * heads,), costs.head, dtype=torch.float64, device="cpu")
    return torch.cat([heads, groups.repeat(layers)])
