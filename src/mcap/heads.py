"""Attention-head utilities for BERT-family encoders under transformers 5.

transformers 5 dropped ``prune_heads`` and ``head_mask``, so this module owns them:

* :func:`masked_heads` scales each head's context vector by a float mask (differentiable);
* :func:`prune_heads` physically removes heads (Q/K/V rows, output-projection columns);
* :func:`head_layout` / :func:`apply_head_layout` describe and rebuild a pruned architecture;
* :func:`attention_probabilities` extracts per-layer, per-head attention maps.

Head indices are always the *original* ones (0..H-1 of the unpruned model); the layout of a
pruned model is stored in ``config.kept_heads`` so that it survives ``save_pretrained``.

Shapes: B = batch, L = sequence length, H = heads of the unpruned model, H_l = heads kept in
layer l, d_h = head size, d = hidden size.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn

from mcap.errors import McapError


@dataclass(frozen=True)
class AttentionBlock:
    """The two modules of one encoder layer that head pruning touches."""

    layer: nn.Module  # the encoder layer (has .attention)
    self_attention: nn.Module  # has .query/.key/.value, or is HeadlessSelfAttention
    output_projection: nn.Linear  # (H_l * d_h) -> d


class HeadlessSelfAttention(nn.Module):
    """Stands in for a self-attention whose every head was removed.

    Its context is empty, so the layer's attention output is just the output projection's
    bias added to the residual: exactly what masking every head to 0 computes.
    """

    num_attention_heads = 0
    attention_head_size = 0

    def forward(self, hidden_states: torch.Tensor, *args, **kwargs) -> tuple[torch.Tensor, None]:
        # hidden_states: (B, L, d) -> context (B, L, 0)
        return hidden_states.new_zeros(*hidden_states.shape[:-1], 0), None


def encoder_layers(model: nn.Module) -> nn.ModuleList:
    """Return the ``encoder.layer`` list of a BERT-family model (BERT, RoBERTa, ELECTRA, ...)."""
    base = getattr(model, "base_model", model)
    layers = getattr(getattr(base, "encoder", None), "layer", None)
    if not isinstance(layers, nn.ModuleList):
        raise McapError(
            f"model {type(model).__name__} has no encoder.layer list; head pruning supports "
            "BERT-family encoders (BertModel, RobertaModel, ElectraModel, ...)"
        )
    return layers


def attention_blocks(model: nn.Module) -> list[AttentionBlock]:
    """The prunable attention modules of each encoder layer, in layer order."""
    return [
        AttentionBlock(layer, layer.attention.self, layer.attention.output.dense)
        for layer in encoder_layers(model)
    ]


def head_size(model: nn.Module) -> int:
    config = model.config
    return config.hidden_size // config.num_attention_heads


def head_layout(model: nn.Module) -> list[list[int]]:
    """Original indices of the heads each layer still has (all heads for an unpruned model)."""
    config = model.config
    kept = getattr(config, "kept_heads", None)
    if kept is None:
        return [list(range(config.num_attention_heads)) for _ in range(config.num_hidden_layers)]
    return [list(layer) for layer in kept]


def removed_head_count(ratio: float, total_heads: int) -> int:
    """How many heads a ratio of ``prune.ratios`` removes: never more than asked (floor)."""
    return math.floor(ratio * total_heads + 1e-9)


def count_heads(model: nn.Module) -> int:
    return sum(len(layer) for layer in head_layout(model))


# --------------------------------------------------------------------------------------------
# Differentiable head mask
# --------------------------------------------------------------------------------------------


@contextmanager
def masked_heads(model: nn.Module, mask: Sequence[torch.Tensor] | torch.Tensor) -> Iterator[None]:
    """Within the context, multiply each head's context vector by ``mask[l][h]``.

    ``mask`` has one row per layer with one value per *kept* head (shape (num_layers, H) for an
    unpruned model). Values are floats, usually in [0, 1]; gradients flow into ``mask``. Scaling
    a head's context equals scaling its attention probabilities (the old ``head_mask``), and it
    works with every attention implementation (eager, sdpa, flash) because it acts on the input
    of the output projection.
    """
    blocks = attention_blocks(model)
    if len(mask) != len(blocks):
        raise McapError(f"head mask has {len(mask)} rows, the model has {len(blocks)} layers")
    d_h = head_size(model)
    handles = []
    for index, (block, layer_mask) in enumerate(zip(blocks, mask)):
        n_heads = block.self_attention.num_attention_heads
        if layer_mask.shape != (n_heads,):
            raise McapError(f"head mask row {index} has shape {tuple(layer_mask.shape)}, expected ({n_heads},)")
        if n_heads:
            handles.append(block.output_projection.register_forward_pre_hook(_scale_heads_hook(layer_mask, d_h)))
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def _scale_heads_hook(layer_mask: torch.Tensor, d_h: int):
    def hook(module: nn.Module, inputs: tuple[torch.Tensor]) -> tuple[torch.Tensor]:
        (context,) = inputs  # (B, L, H_l * d_h)
        per_head = context.unflatten(-1, (-1, d_h))  # (B, L, H_l, d_h)
        # The mask may have been built on another device (a GPU run's model moved by accelerate).
        scaled = per_head * layer_mask.to(device=context.device, dtype=context.dtype)[:, None]  # (H_l,) -> (H_l, 1)
        return (scaled.flatten(-2),)

    return hook


# --------------------------------------------------------------------------------------------
# Physical head removal
# --------------------------------------------------------------------------------------------


def prune_heads(model: nn.Module, heads_to_remove: Mapping[int, Iterable[int]]) -> None:
    """Remove heads in place: ``{layer: [original head index, ...]}``.

    Slices the query/key/value rows and the output-projection columns of the removed heads,
    so the smaller model really does less work. A layer may lose every head. Removing a head
    that is already gone is an error, so callers cannot silently double-count.
    """
    layout = head_layout(model)
    blocks = attention_blocks(model)
    for layer_index, heads in heads_to_remove.items():
        heads = set(heads)
        if not heads:
            continue
        if not 0 <= layer_index < len(blocks):
            raise McapError(f"layer {layer_index} does not exist (model has {len(blocks)} layers)")
        missing = heads - set(layout[layer_index])
        if missing:
            raise McapError(f"layer {layer_index} has no heads {sorted(missing)} (kept: {layout[layer_index]})")
        kept_positions = [pos for pos, head in enumerate(layout[layer_index]) if head not in heads]
        _slice_block(blocks[layer_index], kept_positions, head_size(model))
        layout[layer_index] = [layout[layer_index][pos] for pos in kept_positions]
    model.config.kept_heads = layout


def apply_head_layout(model: nn.Module, kept_heads: Sequence[Sequence[int]]) -> None:
    """Shrink an unpruned model to the architecture described by ``kept_heads``."""
    n_heads = model.config.num_attention_heads
    if len(kept_heads) != model.config.num_hidden_layers:
        raise McapError(
            f"kept_heads lists {len(kept_heads)} layers, the config has {model.config.num_hidden_layers}"
        )
    prune_heads(model, {layer: set(range(n_heads)) - set(kept) for layer, kept in enumerate(kept_heads)})


def _slice_block(block: AttentionBlock, kept_positions: list[int], d_h: int) -> None:
    # Rows of Q/K/V (and columns of the output projection) that belong to the kept heads.
    device = block.output_projection.weight.device
    rows = torch.cat([torch.arange(pos * d_h, (pos + 1) * d_h, device=device) for pos in kept_positions]) if (
        kept_positions) else torch.empty(0, dtype=torch.long, device=device)
    attention = block.layer.attention
    attention.output.dense = slice_linear(block.output_projection, rows, dim=1)
    if not kept_positions:
        attention.self = HeadlessSelfAttention()
        return
    self_attention = block.self_attention
    for name in ("query", "key", "value"):
        setattr(self_attention, name, slice_linear(getattr(self_attention, name), rows, dim=0))
    self_attention.num_attention_heads = len(kept_positions)
    self_attention.all_head_size = len(kept_positions) * d_h


def slice_linear(linear: nn.Linear, index: torch.Tensor, dim: int) -> nn.Linear:
    """A new Linear keeping ``index`` of the output features (dim=0) or input features (dim=1)."""
    weight = linear.weight.detach().index_select(dim, index.to(linear.weight.device))  # (out, in)
    out_features, in_features = weight.shape
    with warnings.catch_warnings():  # a headless layer's projection has zero inputs; that is intended
        warnings.filterwarnings("ignore", message="Initializing zero-element tensors")
        sliced = torch.nn.utils.skip_init(  # no random init: every value is copied below
            nn.Linear, in_features, out_features, bias=linear.bias is not None, device=weight.device, dtype=weight.dtype
        )
    with torch.no_grad():
        sliced.weight.copy_(weight)
        if linear.bias is not None:
            bias = linear.bias.detach()
            sliced.bias.copy_(bias.index_select(0, index.to(bias.device)) if dim == 0 else bias)
    return sliced


# --------------------------------------------------------------------------------------------
# Attention maps
# --------------------------------------------------------------------------------------------


@contextmanager
def eager_attention(model: nn.Module) -> Iterator[None]:
    """Switch to the eager attention kernel, the only one that materialises probabilities."""
    previous = model.config._attn_implementation
    model.set_attn_implementation("eager")
    try:
        yield
    finally:
        model.set_attn_implementation(previous)


@contextmanager
def captured_attention(model: nn.Module) -> Iterator[dict[int, torch.Tensor]]:
    """Within the context (eager kernel), record each layer's (B, H_l, L, L) attention probabilities.

    The dict maps layer index to probabilities of the latest forward pass; headless layers are absent.
    Gradients flow through the recorded tensors, so a loss on them can train a head mask.
    """
    captured: dict[int, torch.Tensor] = {}
    handles = [
        block.self_attention.register_forward_hook(_capture_hook(captured, index))
        for index, block in enumerate(attention_blocks(model))
        if not isinstance(block.self_attention, HeadlessSelfAttention)
    ]
    try:
        with eager_attention(model):
            yield captured
    finally:
        for handle in handles:
            handle.remove()


def attention_probabilities(model: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> list[torch.Tensor]:
    """Per-layer attention probabilities, a list of (B, H_l, L, L) tensors (H_l = 0 for a headless layer).

    Rows of padded query positions are meaningless; callers mask them with ``attention_mask``.
    """
    batch, length = input_ids.shape
    with captured_attention(model) as captured:
        model(input_ids=input_ids, attention_mask=attention_mask)
    return [
        captured.get(index, input_ids.new_zeros((batch, 0, length, length), dtype=torch.float32))
        for index in range(len(attention_blocks(model)))
    ]


def _capture_hook(captured: dict[int, torch.Tensor], index: int):
    def hook(module: nn.Module, inputs, outputs) -> None:
        captured[index] = outputs[1]  # (B, H_l, L, L)

    return hook
