"""Head masking, physical removal, save/load and attention extraction on a tiny random BERT."""

import json

import pytest
import torch

from mcap.errors import McapError
from mcap.heads import (
    HeadlessSelfAttention,
    attention_probabilities,
    count_heads,
    head_layout,
    masked_heads,
    prune_heads,
)
from mcap.modeling import count_parameters, load_model, save_model

LAYOUTS = [
    {0: [1]},
    {0: [0, 3], 1: [2]},
    {1: [0, 1, 2, 3]},  # a layer that loses every head
    {0: [0, 1, 2, 3], 1: [0, 1, 2, 3]},  # every head of the model
]


def logits(model, batch):
    with torch.no_grad():
        return model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits


def zero_mask_for(removed: dict[int, list[int]], layers: int = 2, heads: int = 4) -> torch.Tensor:
    mask = torch.ones(layers, heads)
    for layer, indices in removed.items():
        mask[layer, indices] = 0
    return mask


@pytest.mark.parametrize("removed", LAYOUTS)
def test_removed_heads_give_the_logits_of_masking_them_to_zero(tiny_model, tiny_batch, removed):
    model, _ = tiny_model
    with masked_heads(model, zero_mask_for(removed)):
        masked = logits(model, tiny_batch)
    prune_heads(model, removed)
    assert (logits(model, tiny_batch) - masked).abs().max() < 1e-5


@pytest.mark.parametrize("removed", LAYOUTS)
def test_parameter_count_drops_by_exactly_the_removed_heads(tiny_model, removed):
    model, _ = tiny_model
    hidden, head_size = 32, 8
    # per head: Q, K, V rows (3 x head_size x hidden weights + 3 x head_size biases) and output columns
    per_head = 3 * (head_size * hidden + head_size) + hidden * head_size
    before = count_parameters(model)
    prune_heads(model, removed)
    n_removed = sum(len(v) for v in removed.values())
    assert before - count_parameters(model) == n_removed * per_head
    assert count_heads(model) == 8 - n_removed


def test_a_layer_without_heads_is_replaced_by_a_headless_module(tiny_model):
    model, _ = tiny_model
    prune_heads(model, {1: [0, 1, 2, 3]})
    assert isinstance(model.bert.encoder.layer[1].attention.self, HeadlessSelfAttention)
    assert head_layout(model) == [[0, 1, 2, 3], []]


def test_head_indices_stay_the_original_ones_across_successive_prunings(tiny_model, tiny_batch):
    model, _ = tiny_model
    with masked_heads(model, zero_mask_for({0: [0, 2]})):
        expected = logits(model, tiny_batch)
    prune_heads(model, {0: [0]})
    prune_heads(model, {0: [2]})  # original index 2, now at position 1
    assert head_layout(model)[0] == [1, 3]
    assert (logits(model, tiny_batch) - expected).abs().max() < 1e-5


def test_removing_a_head_twice_is_an_error(tiny_model):
    model, _ = tiny_model
    prune_heads(model, {0: [1]})
    with pytest.raises(McapError, match="layer 0 has no heads \\[1\\]"):
        prune_heads(model, {0: [1]})


def test_fractional_mask_interpolates_and_passes_gradients(tiny_model, tiny_batch):
    model, _ = tiny_model
    mask = torch.full((2, 4), 0.5, requires_grad=True)
    with masked_heads(model, mask):
        output = model(input_ids=tiny_batch["input_ids"], attention_mask=tiny_batch["attention_mask"]).logits
    output.sum().backward()
    assert mask.grad is not None and mask.grad.abs().sum() > 0
    with masked_heads(model, torch.ones(2, 4)):
        unmasked = logits(model, tiny_batch)
    assert (unmasked - logits(model, tiny_batch)).abs().max() == 0  # hooks are gone after the context
    assert (unmasked - output.detach()).abs().max() > 1e-4


def test_tiny_model_has_non_zero_biases_so_bias_slicing_is_tested(tiny_model):
    attention = tiny_model[0].bert.encoder.layer[0].attention
    for linear in (attention.self.query, attention.self.key, attention.self.value, attention.output.dense):
        assert linear.bias.abs().min() > 0


def test_a_mask_made_on_another_device_follows_the_model(tiny_model, tiny_batch):
    """A GPU run builds masks before or after accelerate moves the model; the meta device stands in for CUDA."""
    model = tiny_model[0].to("meta")
    mask = torch.ones(2, 4, requires_grad=True)  # on the CPU
    with masked_heads(model, mask):  # no attention_mask: transformers cannot build one on the meta device
        output = model(input_ids=tiny_batch["input_ids"].to("meta"))
    assert output.logits.device.type == "meta"


def test_mask_shape_is_checked(tiny_model):
    model, _ = tiny_model
    with pytest.raises(McapError, match="row 0 has shape"), masked_heads(model, torch.ones(2, 3)):
        pass


def test_pruned_model_round_trips_through_safetensors_without_the_original(tiny_model, tiny_batch, tmp_path):
    model, tokenizer = tiny_model
    prune_heads(model, {0: [1, 2], 1: [0, 1, 2, 3]})
    expected = logits(model, tiny_batch)
    save_model(model, tokenizer, tmp_path / "pruned", {"strategy": "test"})
    assert (tmp_path / "pruned" / "model.safetensors").is_file()
    loaded, _tokenizer, pruning = load_model(tmp_path / "pruned")
    assert head_layout(loaded) == [[0, 3], []]
    assert pruning == {"strategy": "test"}
    assert torch.equal(logits(loaded, tiny_batch), expected)


def test_a_saved_tokenizer_does_not_record_whether_the_hub_was_offline(tiny_model, tiny_model_dir, tmp_path):
    from transformers import AutoTokenizer

    model, _ = tiny_model
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir, local_files_only=True)  # as under HF_HUB_OFFLINE=1
    assert tokenizer.init_kwargs["local_files_only"] is True
    save_model(model, tokenizer, tmp_path / "saved", {})
    assert "local_files_only" not in json.loads((tmp_path / "saved" / "tokenizer_config.json").read_text())


def test_attention_probabilities_are_per_layer_distributions(tiny_model, tiny_batch):
    model, _ = tiny_model
    prune_heads(model, {0: [3], 1: [0, 1, 2, 3]})
    probs = attention_probabilities(model, tiny_batch["input_ids"], tiny_batch["attention_mask"])
    batch, length = tiny_batch["input_ids"].shape
    assert [p.shape for p in probs] == [(batch, 3, length, length), (batch, 0, length, length)]
    assert torch.allclose(probs[0].sum(-1), torch.ones(batch, 3, length), atol=1e-5)
    padded_keys = tiny_batch["attention_mask"] == 0  # (B, L): padding receives no attention
    assert (probs[0] * padded_keys[:, None, None, :]).abs().max() < 1e-6
    assert model.config._attn_implementation != "eager"  # restored afterwards
