"""FFN neurons: physical removal equals masking, exact parameter counts, rebuilding the architecture from its widths."""

import pytest
import torch

from mcap.errors import McapError
from mcap.ffn import apply_ffn_layout, count_neurons, ffn_layout, masked_neurons, prune_neurons
from mcap.heads import masked_heads, prune_heads
from mcap.modeling import count_parameters

HIDDEN, WIDTH = 32, 64  # the tiny BERT of conftest: 2 layers, FFN width 64
LAYOUTS = [
    {0: [5]},
    {0: list(range(0, 64, 3)), 1: [1, 2, 63]},
    {1: list(range(64))},  # a layer that loses every neuron
    {0: list(range(64)), 1: list(range(64))},  # every neuron of the model
]


def logits(model, batch):
    with torch.no_grad():
        return model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits


def encoded(model, batch):
    """The encoder's last hidden states: the random 2-class head of the tiny model hides most of their changes."""
    with torch.no_grad():
        return model.base_model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state


def zero_mask_for(removed: dict[int, list[int]]) -> list[torch.Tensor]:
    mask = [torch.ones(WIDTH), torch.ones(WIDTH)]
    for layer, positions in removed.items():
        mask[layer][positions] = 0
    return mask


@pytest.mark.parametrize("removed", LAYOUTS)
def test_removed_neurons_give_the_logits_of_masking_them_to_zero(tiny_model, tiny_batch, removed):
    model, _ = tiny_model
    unmasked = encoded(model, tiny_batch)
    with masked_neurons(model, zero_mask_for(removed)):
        masked, masked_logits = encoded(model, tiny_batch), logits(model, tiny_batch)
    prune_neurons(model, removed)
    assert (encoded(model, tiny_batch) - masked).abs().max() < 1e-5
    assert (logits(model, tiny_batch) - masked_logits).abs().max() < 1e-5
    assert (masked - unmasked).abs().max() > 1e-3  # the removed neurons mattered (100x the tolerance above)


@pytest.mark.parametrize("removed", LAYOUTS)
def test_parameter_count_drops_by_exactly_the_removed_neurons(tiny_model, removed):
    model, _ = tiny_model
    per_neuron = HIDDEN + 1 + HIDDEN  # a row of W_up, its bias, a column of W_down
    before = count_parameters(model)
    prune_neurons(model, removed)
    n_removed = sum(len(v) for v in removed.values())
    assert before - count_parameters(model) == n_removed * per_neuron
    assert count_neurons(model) == 2 * WIDTH - n_removed
    assert ffn_layout(model) == [WIDTH - len(removed.get(layer, [])) for layer in range(2)]


def test_positions_refer_to_the_layer_as_it_is_after_earlier_removals(tiny_model, tiny_batch):
    model, _ = tiny_model
    with masked_neurons(model, zero_mask_for({0: [0, 1, 2]})):
        expected = logits(model, tiny_batch)
    prune_neurons(model, {0: [0]})
    prune_neurons(model, {0: [0, 1]})  # the original neurons 1 and 2, now at positions 0 and 1
    assert ffn_layout(model)[0] == WIDTH - 3
    assert (logits(model, tiny_batch) - expected).abs().max() < 1e-5


def test_positions_outside_the_layer_are_an_error(tiny_model):
    model, _ = tiny_model
    prune_neurons(model, {1: range(60, 64)})
    with pytest.raises(McapError, match="layer 1 has 60 FFN neurons, no positions \\[60\\]"):
        prune_neurons(model, {1: [60]})
    with pytest.raises(McapError, match="layer 2 does not exist"):
        prune_neurons(model, {2: [0]})


def test_neuron_and_head_masks_compose_and_pass_gradients(tiny_model, tiny_batch):
    model, _ = tiny_model
    neuron_mask = [torch.full((WIDTH,), 0.5, requires_grad=True), torch.ones(WIDTH, requires_grad=True)]
    head_mask = torch.ones(2, 4, requires_grad=True)
    with masked_neurons(model, neuron_mask), masked_heads(model, head_mask):
        output = model(input_ids=tiny_batch["input_ids"], attention_mask=tiny_batch["attention_mask"]).logits
    output.sum().backward()
    assert neuron_mask[0].grad.abs().sum() > 0 and head_mask.grad.abs().sum() > 0
    wrong_shape = masked_neurons(model, [torch.ones(WIDTH), torch.ones(3)])
    with pytest.raises(McapError, match="neuron mask row 1 has shape \\(3,\\), expected \\(64,\\) or \\(batch, 64\\)"):
        wrong_shape.__enter__()


def test_an_architecture_rebuilt_from_its_widths_loads_the_pruned_weights_exactly(tiny_model, tiny_batch):
    model, _ = tiny_model
    prune_heads(model, {0: [1, 2]})
    prune_neurons(model, {0: range(0, 64, 2), 1: range(64)})
    rebuilt = model.__class__(model.config.__class__.from_dict({**model.config.to_dict(), "kept_heads": None,
                                                                "intermediate_sizes": None}))
    prune_heads(rebuilt, {0: [1, 2]})
    apply_ffn_layout(rebuilt, model.config.intermediate_sizes)
    rebuilt.load_state_dict(model.state_dict(), strict=True)
    rebuilt.eval()
    assert torch.equal(logits(rebuilt, tiny_batch), logits(model.eval(), tiny_batch))
    with pytest.raises(McapError, match="expected 2 widths in \\[0, 64\\]"):
        apply_ffn_layout(rebuilt, [65, 3])


def test_a_mask_per_example_gives_each_example_its_own_gradient(tiny_model, tiny_batch):
    model, _ = tiny_model
    model.eval()  # no dropout: one example's loss is the same alone and in the batch
    rows = len(tiny_batch["input_ids"])
    labels = torch.arange(rows) % 2
    per_example = [torch.ones(rows, WIDTH, requires_grad=True) for _ in range(2)]
    with masked_neurons(model, per_example):
        losses = torch.nn.functional.cross_entropy(logits_with_grad(model, tiny_batch), labels, reduction="none")
    losses.sum().backward()
    for example in (0, rows - 1):  # the gradient of that example's loss alone, through a shared mask
        shared = [torch.ones(WIDTH, requires_grad=True) for _ in range(2)]
        single = {key: value[example:example + 1] for key, value in tiny_batch.items()}
        with masked_neurons(model, shared):
            loss = torch.nn.functional.cross_entropy(logits_with_grad(model, single), labels[example:example + 1])
        loss.backward()
        assert shared[0].grad.abs().sum() > 0
        assert torch.allclose(per_example[0].grad[example], shared[0].grad, atol=1e-6)


def logits_with_grad(model, batch):
    return model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits


def test_a_saved_ffn_pruned_model_loads_exactly_and_its_twin_and_mac_estimate_see_the_widths(tiny_model, tiny_batch,
                                                                                             tmp_path):
    from mcap.evaluate import mac_estimate
    from mcap.modeling import load_model, save_model, unpruned_twin

    model, tokenizer = tiny_model
    prune_heads(model, {1: [0]})
    prune_neurons(model, {0: range(0, 64, 2), 1: range(64)})
    save_model(model, tokenizer, tmp_path / "pruned", {"kind": "structured"})
    loaded, _tokenizer, record = load_model(tmp_path / "pruned")
    assert ffn_layout(loaded) == [32, 0] and record == {"kind": "structured"}
    assert count_parameters(loaded) == count_parameters(model)
    assert torch.equal(logits(loaded, tiny_batch), logits(model.eval(), tiny_batch))
    twin = unpruned_twin(loaded)
    assert ffn_layout(twin) == [WIDTH, WIDTH] and count_neurons(twin) == 2 * WIDTH
    # Half the FFN of layer 0 and all of layer 1 gone: the MAC estimate counts it, beyond what the one head saves.
    heads_only = unpruned_twin(loaded)
    prune_heads(heads_only, {1: [0]})
    shapes = [(2, 8)]
    assert mac_estimate(loaded, shapes)["speedup"] > mac_estimate(heads_only, shapes)["speedup"] > 1
