"""Selecting heads and FFN neurons together under a MAC budget."""

import pytest
import torch
from transformers import BertConfig

from mcap.errors import McapError
from mcap.evaluate import encoder_macs
from mcap.structured import UnitCosts, select_units

CONFIG = BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64)
COSTS = UnitCosts.of(CONFIG, seq_len=16)
TOTAL = 8 * COSTS.head + 128 * COSTS.neuron  # 2 layers x 4 heads, 2 layers x 64 neurons


def random_scores(seed: int) -> tuple[torch.Tensor, list[torch.Tensor]]:
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(2, 4, generator=generator), [torch.rand(64, generator=generator) for _ in range(2)]


def test_unit_costs_add_up_to_the_encoder_macs_evaluate_counts():
    macs = encoder_macs(CONFIG, [range(4), range(4)], seq_len=16)
    assert 8 * COSTS.head == macs["attention"] and 2 * 64 * COSTS.neuron == macs["feed_forward"]


@pytest.mark.parametrize("ratio", [0.0, 0.1, 0.3, 0.6, 0.95])
@pytest.mark.parametrize("seed", [0, 1])
def test_the_removed_macs_never_exceed_the_budget_and_miss_it_by_less_than_a_neuron(ratio, seed):
    selection = select_units(*random_scores(seed), COSTS, ratio)
    removed = sum(map(len, selection.heads.values())) * COSTS.head + sum(map(len, selection.neurons.values())) * COSTS.neuron
    assert removed == selection.removed_macs <= ratio * selection.total_macs
    assert ratio * selection.total_macs - removed < COSTS.neuron


def test_the_least_important_units_per_mac_go_first():
    head_scores = torch.ones(2, 4)
    head_scores[1, 2] = 0.0  # a useless head: removed before any neuron
    neuron_scores = [torch.ones(64), torch.ones(64)]
    neuron_scores[0][[3, 7]] = 1e-3  # two nearly useless neurons
    selection = select_units(head_scores, neuron_scores, COSTS, ratio=(COSTS.head + 2 * COSTS.neuron) / TOTAL)
    assert selection.heads == {1: [2]} and selection.neurons == {0: [3, 7]}


def test_importance_is_weighed_per_mac_so_a_costly_head_goes_before_a_cheap_neuron_of_equal_score():
    head_scores, neuron_scores = torch.full((2, 4), 0.5), [torch.full((64,), 0.5), torch.full((64,), 0.5)]
    selection = select_units(head_scores, neuron_scores, COSTS, ratio=COSTS.head / TOTAL)
    assert selection.heads == {0: [0]} and selection.neurons == {}


def test_bad_budgets_and_mismatched_layers_are_errors():
    with pytest.raises(McapError, match="a MAC budget is a fraction in \\[0, 1\\), got 1.0"):
        select_units(*random_scores(0), COSTS, 1.0)
    with pytest.raises(McapError, match="2 layers of head scores but 1 of neuron scores"):
        select_units(torch.ones(2, 4), [torch.ones(64)], COSTS, 0.5)
