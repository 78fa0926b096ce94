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
from dataclasses import dataclass

import torch

from mcap.errors import McapError


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
