"""Selecting heads and FFN neurons together under a MAC budget."""


import pytest
import torch
from transformers import BertConfig

from mcap.budget import UnitCosts
from mcap.errors import McapError
from mcap.evaluate import encoder_macs
from mcap.structured import select_units

CONFIG = BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64)
COSTS = UnitCosts.of(CONFIG, seq_len=16)
TOTAL = 8 * COSTS.head + 128 * COSTS.neuron  # 2 layers x 4 heads, 2 layers x 64 neurons


def random_scores(seed: int) -> tuple[torch.Tensor, list[torch.Tensor]]:
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(2, 4, generator=generator), [torch.rand(64, generator=generator) for _ in range(2)]


def test_unit_costs_add_up_to_the_encoder_macs_evaluate_counts():
    macs = encoder_macs(CONFIG, [range(4), range(4)], seq_len=16)
    assert 8 * COSTS.head == macs["attention"] and 2 * 64 * COSTS.neuron == macs["feed_forward"]
    narrow = encoder_macs(CONFIG, [range(1), range(4)], seq_len=16, ffn_widths=[10, 0])
    assert COSTS.encoder_macs(5, 10) == sum(narrow.values()) == 5 * COSTS.head + 10 * COSTS.neuron


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


# --------------------------------------------------------------------------------------------
# Unit statistics and removal on a tiny model
# --------------------------------------------------------------------------------------------


def labelled_batches(tokenizer, count: int = 12, size: int = 4) -> list[dict]:
    from conftest import make_sentences

    frame = make_sentences(count, seed=3)
    return [{**tokenizer(list(frame["sentence"][start:start + size]), padding=True, return_tensors="pt"),
             "labels": torch.tensor(frame["label"][start:start + size].to_numpy())} for start in range(0, count, size)]


def per_example_mask_gradients(model, batches) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Each example alone: the gradients of the head masks (N, 2, 4) and of each layer's neuron masks (N, 64)."""
    from mcap.ffn import masked_neurons
    from mcap.heads import masked_heads

    heads, neurons = [], [[], []]
    for batch in batches:
        for row in range(len(batch["labels"])):
            single = {key: value[row:row + 1] for key, value in batch.items()}
            head_mask = torch.ones(2, 4, requires_grad=True)
            neuron_mask = [torch.ones(64, requires_grad=True) for _ in range(2)]
            with masked_heads(model, head_mask), masked_neurons(model, neuron_mask):
                logits = model(input_ids=single["input_ids"], attention_mask=single["attention_mask"]).logits
            torch.nn.functional.cross_entropy(logits, single["labels"]).backward()
            heads.append(head_mask.grad)
            for layer in range(2):
                neurons[layer].append(neuron_mask[layer].grad)
    return torch.stack(heads), [torch.stack(layer) for layer in neurons]


def test_unit_fisher_is_the_mean_squared_mask_gradient_of_each_example_alone(tiny_model):
    from mcap.structured import unit_statistics

    model, tokenizer = tiny_model
    batches = labelled_batches(tokenizer)
    statistics = unit_statistics(model, batches)
    head_gradients, neuron_gradients = per_example_mask_gradients(model, batches)
    heads, neurons = (head_gradients ** 2).mean(0), [(gradients ** 2).mean(0) for gradients in neuron_gradients]
    assert statistics.examples == 12
    assert torch.allclose(torch.stack(statistics.head_fisher).float(), heads, rtol=1e-4, atol=1e-10)
    for layer in range(2):
        assert torch.allclose(statistics.neuron_fisher[layer].float(), neurons[layer], rtol=1e-4, atol=1e-10)
    assert heads.min() > 0  # every unit matters a little: the comparison is not of zeros


def test_the_fisher_blocks_are_the_mean_outer_products_of_each_examples_mask_gradients(tiny_model):
    from mcap.structured import unit_statistics

    model, tokenizer = tiny_model
    batches = labelled_batches(tokenizer)
    statistics = unit_statistics(model, batches, blocks=True)
    heads, neurons = per_example_mask_gradients(model, batches)
    for layer in range(2):
        expected = heads[:, layer].T @ heads[:, layer] / 12  # (4, 4)
        assert torch.allclose(statistics.head_blocks[layer].float(), expected, rtol=1e-4, atol=1e-10)
        assert torch.allclose(statistics.neuron_blocks[layer].float(), neurons[layer].T @ neurons[layer] / 12,
                              rtol=1e-4, atol=1e-10)
        assert torch.equal(statistics.head_blocks[layer].diagonal(), statistics.head_fisher[layer])
        assert expected.abs().triu(1).max() > 0  # heads interact: the off-diagonal is not all zero
    assert unit_statistics(model, batches).head_blocks is None  # not computed unless asked for


def fisher_loss(block: torch.Tensor, removed: list[int]) -> float:
    """zᵀ I z of removing ``removed``."""
    z = torch.zeros(len(block), dtype=block.dtype)
    z[removed] = 1
    return float(z @ block @ z)


def test_rearrangement_removes_a_unit_whose_gradient_cancels_a_removed_ones():
    from mcap.structured import _rearranged

    generator = torch.Generator().manual_seed(0)
    gradients = 0.4 * torch.randn(2000, 5, generator=generator, dtype=torch.float64)  # (examples, units): 1-3 alone
    gradients[:, 0] *= 0.75  # the least important unit
    gradients[:, 4] = -gradients[:, 0] + 0.3 * torch.randn(2000, generator=generator, dtype=torch.float64)
    block = gradients.T @ gradients / 2000
    assert torch.argsort(block.diagonal()).tolist()[0] == 0 and torch.argsort(block.diagonal()).tolist()[-1] == 4
    lowest = torch.argsort(block.diagonal())[:2].tolist()  # 0 and one of 1-3
    assert _rearranged(2, block) == [0, 4]  # unit 4, the most important alone, cancels most of unit 0's gradient
    assert fisher_loss(block, [0, 4]) < 0.5 * fisher_loss(block, lowest)


@pytest.mark.parametrize("seed", range(5))
def test_rearrangement_keeps_the_count_and_never_raises_the_predicted_loss(seed):
    from mcap.structured import _rearranged

    generator = torch.Generator().manual_seed(seed)
    gradients = torch.randn(40, 30, generator=generator, dtype=torch.float64) @ torch.randn(30, 30, generator=generator,
                                                                                               dtype=torch.float64)
    block = gradients.T @ gradients / 40
    for count in (0, 1, 7, 15, 29, 30):
        lowest = torch.argsort(block.diagonal(), stable=True)[:count].tolist()
        chosen = _rearranged(count, block)
        assert len(set(chosen)) == count and chosen == sorted(chosen)
        assert fisher_loss(block, chosen) <= fisher_loss(block, lowest) + 1e-12


def test_rearranging_a_selection_keeps_each_layers_counts_and_needs_the_blocks(tiny_model):
    from mcap.structured import rearrange_masks, select_units, unit_statistics

    model, tokenizer = tiny_model
    statistics = unit_statistics(model, labelled_batches(tokenizer), blocks=True)
    searched = select_units(torch.stack(statistics.head_fisher), statistics.neuron_fisher, COSTS, 0.5)
    rearranged = rearrange_masks(searched, statistics)
    assert {layer: len(units) for layer, units in rearranged.heads.items()} == \
        {layer: len(units) for layer, units in searched.heads.items()}
    assert {layer: len(units) for layer, units in rearranged.neurons.items()} == \
        {layer: len(units) for layer, units in searched.neurons.items()}
    assert (rearranged.removed_macs, rearranged.total_macs) == (searched.removed_macs, searched.total_macs)
    for layer, units in searched.neurons.items():
        block = statistics.neuron_blocks[layer]
        assert fisher_loss(block, rearranged.neurons[layer]) <= fisher_loss(block, units) + 1e-15
    with pytest.raises(McapError, match="blocks=True"):
        rearrange_masks(searched, unit_statistics(model, labelled_batches(tokenizer)))


def test_whole_neuron_groups_and_heads_go_in_increasing_score_within_the_budget():
    from mcap.budget import unit_cost_vector
    from mcap.structured import select_groups

    head_scores = torch.tensor([[0.9, 0.8, 0.7, 0.6], [0.5, 0.95, 0.99, 0.98]])
    group_scores = torch.tensor([[0.1, 0.92, 0.93, 0.94, 0.96, 0.97, 0.91, 0.2], [0.3] + [0.999] * 7])  # 8 groups of 8
    cost = unit_cost_vector(COSTS, 2, 4, 64, 8)
    ratio = (3 * 8 * COSTS.neuron + COSTS.head + 1) / TOTAL  # the three lowest groups and the lowest head fit
    selection = select_groups(head_scores, group_scores, 64, 8, COSTS, ratio)
    assert selection.neurons == {0: [*range(8), *range(56, 64)], 1: list(range(8))}
    assert selection.heads == {1: [0]}
    assert selection.removed_macs == 3 * 8 * COSTS.neuron + COSTS.head <= ratio * selection.total_macs
    assert selection.total_macs == TOTAL == int(cost.sum())
    with pytest.raises(McapError, match=r"group scores of shape \(2, 7\); 2 layers of 64 FFN neurons in groups of 8 "
                                        r"need \(2, 8\)"):
        select_groups(head_scores, group_scores[:, :7], 64, 8, COSTS, 0.3)


def test_the_last_neuron_group_of_an_uneven_width_is_smaller_and_costs_less():
    from mcap.budget import neuron_groups, unit_cost_vector

    assert [len(group) for group in neuron_groups(20, 8)] == [8, 8, 4]
    cost = unit_cost_vector(COSTS, 1, 4, 20, 8)
    assert cost.tolist() == [COSTS.head] * 4 + [8 * COSTS.neuron, 8 * COSTS.neuron, 4 * COSTS.neuron]


def test_scores_by_budget_are_read_for_each_budget_and_a_missing_budget_is_named(tmp_path, monkeypatch):
    import json

    from mcap.score_files import budget_scores_path
    from mcap.structured import learned_scores_json, read_budget_scores

    monkeypatch.chdir(tmp_path)
    with pytest.raises(McapError, match=r"delta_by_budget/sst2\.json: missing; the meta_controller_budgets stage"):
        read_budget_scores("structured_mcap", "sst2", [0.1])
    scores = {f"{ratio:g}": learned_scores_json(torch.full((2, 4), ratio), torch.zeros(2, 8), 8) for ratio in (0.1, 0.3)}
    path = budget_scores_path("structured_mcap", "sst2")
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"by_budget": scores}))
    read = read_budget_scores("structured_mcap", "sst2", [0.3, 0.1])
    assert list(read) == [0.3, 0.1] and read[0.3]["heads"][0][0] == pytest.approx(0.3)
    with pytest.raises(McapError, match=r"no controller trained at the budgets \[0\.2\] of 'post_prune.mac_ratios' "
                                        r"\(trained at 0\.1, 0\.3\)"):
        read_budget_scores("structured_mcap", "sst2", [0.1, 0.2])
