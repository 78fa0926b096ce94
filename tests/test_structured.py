"""Selecting heads and FFN neurons together under a MAC budget."""

import pytest
import torch
from transformers import BertConfig

from mcap.errors import McapError
from mcap.evaluate import encoder_macs
from mcap.structured import UnitCosts, least_squares_scales, neuron_gram, select_units

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


def contributions(tokens: int = 200, units: int = 12, width: int = 8, seed: int = 0) -> torch.Tensor:
    """(tokens, units, d) unit contributions with some redundancy between units (so removing one can be repaired)."""
    generator = torch.Generator().manual_seed(seed)
    base = torch.randn(tokens, units // 2, width, generator=generator, dtype=torch.float64)
    return torch.cat([base, base * 0.8 + 0.2 * torch.randn(tokens, units // 2, width, generator=generator,
                                                           dtype=torch.float64)], dim=1)


def gram_of(units: torch.Tensor) -> torch.Tensor:
    return torch.einsum("tjd,tkd->jk", units, units)


def test_least_squares_scales_reconstruct_better_than_keeping_the_survivors_as_they_are():
    units = contributions()
    kept = torch.ones(12, dtype=torch.bool)
    kept[[0, 3, 7]] = False
    target = units.sum(dim=1)

    def error(scales):
        return float(((units[:, kept] * scales[None, :, None]).sum(dim=1) - target).pow(2).sum())

    tuned = least_squares_scales(gram_of(units), kept, damping=0.0)
    assert error(tuned) < 0.5 * error(torch.ones(9, dtype=torch.float64))
    nudged = tuned + 1e-3 * torch.randn(9, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    assert error(tuned) <= error(nudged)  # the least-squares optimum


def test_keeping_every_unit_keeps_every_scale_at_one_and_keeping_none_gives_no_scales():
    units = contributions(seed=2)
    scales = least_squares_scales(gram_of(units), torch.ones(12, dtype=torch.bool))
    assert torch.allclose(scales, torch.ones(12, dtype=torch.float64), atol=1e-4)
    assert least_squares_scales(gram_of(units), torch.zeros(12, dtype=torch.bool)).shape == (0,)


def test_the_neuron_gram_is_the_gram_of_activation_times_down_projection_column():
    generator = torch.Generator().manual_seed(3)
    activations, down = torch.randn(50, 6, generator=generator), torch.randn(4, 6, generator=generator)  # (t, I), (d, I)
    units = activations[:, :, None] * down.T[None]  # (t, I, d): a_tj · W_down[:, j]
    assert torch.allclose(neuron_gram(activations.T @ activations, down), gram_of(units), rtol=1e-4, atol=1e-4)


# --------------------------------------------------------------------------------------------
# Unit statistics and removal on a tiny model
# --------------------------------------------------------------------------------------------


def labelled_batches(tokenizer, count: int = 12, size: int = 4) -> list[dict]:
    from conftest import make_sentences

    frame = make_sentences(count, seed=3)
    return [{**tokenizer(list(frame["sentence"][start:start + size]), padding=True, return_tensors="pt"),
             "labels": torch.tensor(frame["label"][start:start + size].to_numpy())} for start in range(0, count, size)]


def per_example_mask_fisher(model, batches) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """The Fisher importance by definition: each example alone, gradients of a head and a neuron mask at 1."""
    from mcap.ffn import masked_neurons
    from mcap.heads import masked_heads

    heads, neurons, count = torch.zeros(2, 4), [torch.zeros(64), torch.zeros(64)], 0
    for batch in batches:
        for row in range(len(batch["labels"])):
            single = {key: value[row:row + 1] for key, value in batch.items()}
            head_mask = torch.ones(2, 4, requires_grad=True)
            neuron_mask = [torch.ones(64, requires_grad=True) for _ in range(2)]
            with masked_heads(model, head_mask), masked_neurons(model, neuron_mask):
                logits = model(input_ids=single["input_ids"], attention_mask=single["attention_mask"]).logits
            torch.nn.functional.cross_entropy(logits, single["labels"]).backward()
            heads += head_mask.grad ** 2
            for layer in range(2):
                neurons[layer] += neuron_mask[layer].grad ** 2
            count += 1
    return heads / count, [n / count for n in neurons]


def test_unit_fisher_is_the_mean_squared_mask_gradient_of_each_example_alone(tiny_model):
    from mcap.structured import unit_statistics

    model, tokenizer = tiny_model
    batches = labelled_batches(tokenizer)
    statistics = unit_statistics(model, batches)
    heads, neurons = per_example_mask_fisher(model, batches)
    assert statistics.examples == 12
    assert torch.allclose(torch.stack(statistics.head_fisher).float(), heads, rtol=1e-4, atol=1e-10)
    for layer in range(2):
        assert torch.allclose(statistics.neuron_fisher[layer].float(), neurons[layer], rtol=1e-4, atol=1e-10)
    assert heads.min() > 0  # every unit matters a little: the comparison is not of zeros


def ffn_output(model, batches, layer: int) -> torch.Tensor:
    """Layer ``layer``'s FFN output before its bias on every real token: (T, d)."""
    captured = []
    down = model.base_model.encoder.layer[layer].output.dense
    handle = down.register_forward_hook(lambda module, inputs, output: captured.append(output - module.bias))
    with torch.no_grad():
        for batch in batches:
            model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
            captured[-1] = captured[-1][batch["attention_mask"].bool()]
    handle.remove()
    return torch.cat(captured)


def test_mask_tuning_reconstructs_a_pruned_layer_better_and_changes_nothing_when_nothing_is_removed(tiny_model):
    import copy

    from mcap.ffn import ffn_layout
    from mcap.structured import StructuredSelection, remove_units, unit_statistics

    model, tokenizer = tiny_model
    batches = labelled_batches(tokenizer)
    statistics = unit_statistics(model, batches)
    target = ffn_output(model, batches, 0)
    # Only layer 0 loses neurons, so its inputs are the unpruned ones: least squares is optimal there.
    selection = StructuredSelection(heads={}, neurons={0: list(range(0, 64, 2))}, removed_macs=0, total_macs=1)
    untuned, tuned = copy.deepcopy(model), copy.deepcopy(model)
    remove_units(untuned, selection)
    remove_units(tuned, selection, statistics)
    assert ffn_layout(tuned) == ffn_layout(untuned) == [32, 64]
    error = {name: float(((ffn_output(m, batches, 0) - target) ** 2).sum()) for name, m in (("untuned", untuned),
                                                                                             ("tuned", tuned))}
    assert error["tuned"] < 0.9 * error["untuned"]
    unchanged = copy.deepcopy(model)
    remove_units(unchanged, StructuredSelection({}, {}, 0, 1), statistics)
    batch = batches[0]
    with torch.no_grad():
        assert torch.allclose(unchanged(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits,
                              model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits,
                              atol=1e-4)


def test_the_head_gram_is_the_gram_of_each_heads_contribution_to_the_attention_output():
    from mcap.structured import head_gram

    generator = torch.Generator().manual_seed(0)
    contexts, weight = torch.randn(5, 3 * 2, generator=generator), torch.randn(4, 3 * 2, generator=generator)
    contributions = torch.stack([contexts[:, h * 2:(h + 1) * 2] @ weight[:, h * 2:(h + 1) * 2].T for h in range(3)], 1)
    expected = torch.einsum("thd,tgd->hg", contributions, contributions)  # (3, 3)
    assert torch.allclose(head_gram(contexts, weight, d_h=2), expected, atol=1e-5)
    assert torch.allclose(contributions.sum(1), contexts @ weight.T, atol=1e-5)  # they add up to the projection
