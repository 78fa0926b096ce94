"""Feed-forward (FFN) neuron utilities for BERT-family encoders: the FFN counterpart of :mod:`mcap.heads`.

* :func:`masked_neurons` scales each intermediate neuron's activation by a float mask (differentiable);
* :func:`prune_neurons` physically removes neurons (rows of the up projection, columns of the down one);
* :func:`ffn_layout` / :func:`apply_ffn_layout` describe and rebuild a pruned architecture.

Neuron j of layer l computes a_j = act(x · W_up[j] + b_up[j]) and adds a_j · W_down[:, j] to the
layer's FFN output, so removing it (row j of W_up and b_up, column j of W_down) equals masking a_j
to 0; the down projection's bias stays. A layer may lose every neuron: its FFN then adds only that
bias, as masking every neuron does.

The layout of a pruned model is ``config.intermediate_sizes``, one width per layer, which survives
``save_pretrained``. Neuron indices are positions in the model as it is (0..I_l-1), not in the
unpruned one: a width is all it takes to rebuild the architecture, and the weights come with it.

Shapes: B = batch, L = sequence length, d = hidden size, I = the unpruned width (config.intermediate_size),
I_l = neurons kept in layer l.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn

from mcap.errors import McapError
from mcap.heads import encoder_layers, slice_linear


@dataclass(frozen=True)
class FeedForwardBlock:
    """The two Linear modules of one encoder layer's FFN."""

    layer: nn.Module  # the encoder layer (has .intermediate.dense and .output.dense)
    up: nn.Linear  # d -> I_l
    down: nn.Linear  # I_l -> d


def feed_forward_blocks(model: nn.Module) -> list[FeedForwardBlock]:
    """The FFN of each encoder layer, in layer order."""
    return [FeedForwardBlock(layer, layer.intermediate.dense, layer.output.dense) for layer in encoder_layers(model)]


def ffn_layout(model: nn.Module) -> list[int]:
    """The FFN width each layer still has (``config.intermediate_size`` everywhere for an unpruned model)."""
    config = model.config
    sizes = getattr(config, "intermediate_sizes", None)
    return list(sizes) if sizes is not None else [config.intermediate_size] * config.num_hidden_layers


def count_neurons(model: nn.Module) -> int:
    return sum(ffn_layout(model))


# --------------------------------------------------------------------------------------------
# Differentiable neuron mask
# --------------------------------------------------------------------------------------------


@contextmanager
def masked_neurons(model: nn.Module, mask: Sequence[torch.Tensor]) -> Iterator[None]:
    """Within the context, multiply each FFN neuron's activation by ``mask[l][j]``.

    One row per layer with one value per kept neuron: shape (I_l,), or (B, I_l) for a mask per example,
    whose gradient is then each example's own (what a Fisher estimate needs). Gradients flow into
    ``mask``. It acts on the input of the down projection, so it composes with :func:`mcap.heads.masked_heads`.
    """
    blocks = feed_forward_blocks(model)
    if len(mask) != len(blocks):
        raise McapError(f"neuron mask has {len(mask)} rows, the model has {len(blocks)} layers")
    handles = []
    for index, (block, layer_mask) in enumerate(zip(blocks, mask)):
        if layer_mask.shape[-1:] != (block.down.in_features,) or layer_mask.dim() > 2:
            raise McapError(f"neuron mask row {index} has shape {tuple(layer_mask.shape)}, "
                            f"expected ({block.down.in_features},) or (batch, {block.down.in_features})")
        handles.append(block.down.register_forward_pre_hook(_scale_neurons_hook(layer_mask)))
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def _scale_neurons_hook(layer_mask: torch.Tensor):
    def hook(module: nn.Module, inputs: tuple[torch.Tensor]) -> tuple[torch.Tensor]:
        (activations,) = inputs  # (B, L, I_l)
        scale = layer_mask.to(device=activations.device, dtype=activations.dtype)
        return (activations * (scale[:, None, :] if scale.dim() == 2 else scale),)  # (B, 1, I_l) or (I_l,)

    return hook


# --------------------------------------------------------------------------------------------
# Physical neuron removal
# --------------------------------------------------------------------------------------------


def prune_neurons(model: nn.Module, neurons_to_remove: Mapping[int, Iterable[int]]) -> None:
    """Remove FFN neurons in place: ``{layer: [position, ...]}`` (positions in the current layer).

    Slices the up projection's rows (and bias) and the down projection's columns, so the smaller
    model does less work, and records the widths in ``config.intermediate_sizes``.
    """
    blocks, sizes = feed_forward_blocks(model), ffn_layout(model)
    for layer_index, neurons in neurons_to_remove.items():
        neurons = set(neurons)
        if not neurons:
            continue
        if not 0 <= layer_index < len(blocks):
            raise McapError(f"layer {layer_index} does not exist (model has {len(blocks)} layers)")
        outside = sorted(n for n in neurons if not 0 <= n < sizes[layer_index])
        if outside:
            raise McapError(f"layer {layer_index} has {sizes[layer_index]} FFN neurons, no positions {outside[:5]}")
        block = blocks[layer_index]
        kept = torch.tensor([n for n in range(sizes[layer_index]) if n not in neurons], dtype=torch.long,
                            device=block.up.weight.device)
        block.layer.intermediate.dense = slice_linear(block.up, kept, dim=0)
        block.layer.output.dense = slice_linear(block.down, kept, dim=1)
        sizes[layer_index] = len(kept)
    model.config.intermediate_sizes = sizes


def apply_ffn_layout(model: nn.Module, sizes: Sequence[int]) -> None:
    """Shrink an unpruned model's FFNs to the widths ``sizes`` (the weights are loaded afterwards)."""
    full = model.config.intermediate_size
    if len(sizes) != model.config.num_hidden_layers or not all(0 <= size <= full for size in sizes):
        raise McapError(f"intermediate_sizes {list(sizes)}: expected {model.config.num_hidden_layers} widths "
                        f"in [0, {full}]")
    prune_neurons(model, {layer: range(size, full) for layer, size in enumerate(sizes)})
