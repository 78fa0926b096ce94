"""ONNX export of pruned models: uneven heads, a headless layer and narrow FFNs export and match PyTorch."""

import pytest
import torch

from conftest import make_sentences
from mcap.errors import McapError
from mcap.export import export_onnx, max_logit_difference, onnx_logits, onnx_session
from mcap.ffn import prune_neurons
from mcap.heads import prune_heads


def tokenised(tokenizer, count: int, seed: int) -> dict[str, torch.Tensor]:
    return dict(tokenizer(list(make_sentences(count, seed)["sentence"]), padding=True, return_tensors="pt"))


@pytest.mark.parametrize(("heads", "neurons"), [
    ({}, {}),  # unpruned
    ({0: [1, 2]}, {0: range(0, 64, 2)}),  # uneven heads and FFN widths per layer
    ({1: [0, 1, 2, 3]}, {1: range(64)}),  # a layer without heads and without FFN neurons
])
def test_a_pruned_model_exports_to_onnx_with_the_logits_of_pytorch_on_other_shapes(tiny_model, tmp_path, heads, neurons):
    model, tokenizer = tiny_model
    prune_heads(model, heads)
    prune_neurons(model, neurons)
    export_onnx(model, tokenised(tokenizer, 4, seed=1), tmp_path / "model.onnx")
    session = onnx_session(tmp_path / "model.onnx", threads=1)
    batches = [tokenised(tokenizer, 7, seed=2), tokenised(tokenizer, 2, seed=3), tokenised(tokenizer, 1, seed=4)]
    assert len({batch["input_ids"].shape for batch in batches}) == 3  # batch sizes and lengths the trace never saw
    with torch.no_grad():
        expected = torch.cat([model(**batch).logits for batch in batches]).numpy()
    assert max_logit_difference(session, batches, expected) < 1e-4
    with pytest.raises(McapError, match="shape"):
        max_logit_difference(session, batches, expected[1:])
    assert onnx_logits(session, batches[0]).shape == (7, 2)


def test_a_one_token_or_one_row_example_is_refused_since_it_would_fix_that_axis(tiny_model, tmp_path):
    model, tokenizer = tiny_model
    example = tokenised(tokenizer, 1, seed=1)
    with pytest.raises(McapError, match="at least 2 x 2 tokens, got 1 x"):
        export_onnx(model, example, tmp_path / "model.onnx")
    assert not (tmp_path / "model.onnx").exists()
