"""Reconstruction after structured pruning, without retraining: each sublayer of the pruned model is brought back
towards a teacher's output, in the order of the forward pass, by least squares on a few thousand train tokens.

Two methods, two teachers, one stop rule:

* ``scales`` (Kwon et al. 2022, Sec. 4.3, "mask tuning"): one scale per surviving head or neuron;
* ``refit`` (in the spirit of K-prune, Park et al. 2024, and LIAR, 2024): the sublayer's whole output projection,
  weights and bias, refitted on the kept features, with a ridge term towards its current weights;
* teacher ``unpruned``: the fine-tuned model the pruned one was cut from;
* teacher ``kwon_sqrt`` (Kwon et al.'s code, ``main.py``): the model pruned by the same search to the MACs
  budget √(1 − r) kept, i.e. :func:`teacher_ratio` removed, a nearer target than the unpruned model;
* a sublayer whose solve fails (not finite; scales beyond ±``max_scale``) is skipped, or with ``stop_at_failure``
  ends the tuning there (Kwon et al.'s rule).

:func:`relative_errors` measures, per sublayer, how far a model's pre-LayerNorm sums lie from a teacher's.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import torch
from torch import nn

from mcap.ffn import feed_forward_blocks
from mcap.heads import attention_blocks, encoder_layers, head_size
from mcap.params import RECONSTRUCTION_METHODS


def teacher_ratio(ratio: float) -> float:
    """The fraction of MACs Kwon et al.'s teacher removes for a budget removing ``ratio``: it keeps √(1 − ratio)."""
    return 1 - math.sqrt(1 - ratio)


# --------------------------------------------------------------------------------------------
# What a sublayer is, and what it is reconstructed towards
# --------------------------------------------------------------------------------------------
#
# Each sublayer (an attention, then an FFN, per layer) ends in the pre-LayerNorm sum s = x + z Wᵀ + b: its residual
# input x (d), its units' outputs z (F = units · w features; w = d_h per head, 1 per neuron) through the output
# projection W (d, F) and its bias b. In order, sublayer by sublayer, the pruned model's sum, on its own (already
# reconstructed) inputs, is brought closest to the teacher's sum s* on the teacher's inputs, over the tuning
# sentences' real tokens; through x, each sublayer also corrects the drift its inputs carry from the sublayers before
# it. In the last layer only the [CLS] token reaches the classifier, so only it is reconstructed there.


@dataclass(frozen=True)
class _Sublayer:
    """A sublayer's output projection (its input: the units' outputs, ``width`` features per unit) and the
    LayerNorm whose input is its pre-LayerNorm sum."""

    projection: nn.Linear
    layer_norm: nn.Module
    width: int


def _sublayers(model: nn.Module) -> list[_Sublayer]:
    """Attention then FFN of each layer, in the order the forward pass meets them."""
    d_h = head_size(model)
    sublayers = []
    for attention, ffn in zip(attention_blocks(model), feed_forward_blocks(model)):
        sublayers += [_Sublayer(attention.output_projection, attention.layer.attention.output.LayerNorm, d_h),
                      _Sublayer(ffn.down, ffn.layer.output.LayerNorm, 1)]
    return sublayers


class _Captured(Exception):
    """Stops a forward pass once the sublayer being tuned has given its inputs: the rest is not needed."""


def _tokens(batch: dict[str, torch.Tensor], cls_only: bool) -> torch.Tensor:
    """(B, L) bool: the tokens a sublayer is tuned on (the real ones, or only [CLS])."""
    real = batch["attention_mask"].bool()
    if not cls_only:
        return real
    first = torch.zeros_like(real)
    first[:, 0] = True
    return first


def _forward(model: nn.Module, batch: dict[str, torch.Tensor]) -> None:
    try:
        model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    except _Captured:
        pass


@dataclass(frozen=True)
class ReconstructionTargets:
    """A teacher's pre-LayerNorm sums on the tuning ``batches``, per sublayer, per batch (T_b, d) at the tokens the
    sublayer is tuned on."""

    batches: list[dict[str, torch.Tensor]]
    sums: list[list[torch.Tensor]]


@torch.no_grad()
def reconstruction_targets(teacher: nn.Module, batches: Iterable[dict[str, torch.Tensor]]) -> ReconstructionTargets:
    """The targets of :func:`reconstruct` on ``batches`` (input_ids, attention_mask): ``teacher``'s sums."""
    batches = list(batches)
    return ReconstructionTargets(batches, _pre_norm_sums(teacher.eval(), batches))


def _pre_norm_sums(model: nn.Module, batches: list[dict[str, torch.Tensor]]) -> list[list[torch.Tensor]]:
    """Per sublayer, per batch: the pre-LayerNorm sum (T_b, d) at the tokens it is tuned on."""
    sublayers = _sublayers(model)
    latest: dict[int, torch.Tensor] = {}

    def keeper(index: int):
        def hook(module: nn.Module, inputs: tuple[torch.Tensor]) -> None:
            latest[index] = inputs[0]
        return hook

    sums: list[list[torch.Tensor]] = [[] for _ in sublayers]
    handles = [sublayer.layer_norm.register_forward_pre_hook(keeper(index)) for index, sublayer in enumerate(sublayers)]
    try:
        for batch in batches:
            _forward(model, batch)
            for index, per_batch in enumerate(sums):
                per_batch.append(latest[index][_tokens(batch, index >= len(sublayers) - 2)])
    finally:
        for handle in handles:
            handle.remove()
    return sums


@torch.no_grad()
def relative_errors(model: nn.Module, targets: ReconstructionTargets) -> list[float]:
    """Per sublayer: Σ_t ‖s*_t − s_t‖² / Σ_t ‖s*_t‖², ``model``'s pre-LayerNorm sums s against the targets s*."""
    sums = _pre_norm_sums(model.eval(), targets.batches)
    return [float(sum(((target - own).double() ** 2).sum() for target, own in zip(wanted, got))
                  / sum((target.double() ** 2).sum() for target in wanted))
            for wanted, got in zip(targets.sums, sums)]


# The pruned model is reconstructed on its own inputs, which change as the sublayers before are reconstructed. Each
# encoder layer's inputs on the tuning sentences are kept (the hidden states and what the encoder passes beside them,
# the attention mask), so a sublayer's samples come from its own layer alone, not from a forward pass from the
# embeddings: once a layer is reconstructed, its outputs on those inputs are the next layer's.
_LayerInputs = list[tuple[tuple, dict]]  # per batch: a layer's positional (hidden states (B, L, d), mask, …) and keyword arguments


def _first_layer_inputs(model: nn.Module, batches: list[dict[str, torch.Tensor]]) -> _LayerInputs:
    """Per batch, what the encoder passes its first layer."""
    inputs: _LayerInputs = []

    def keep(module: nn.Module, args: tuple, kwargs: dict) -> None:
        inputs.append((args, kwargs))
        raise _Captured

    handle = encoder_layers(model)[0].register_forward_pre_hook(keep, with_kwargs=True)
    try:
        for batch in batches:
            _forward(model, batch)
    finally:
        handle.remove()
    return inputs


def _next_layer_inputs(layer: nn.Module, inputs: _LayerInputs) -> _LayerInputs:
    """``layer``'s outputs on ``inputs``, as the next layer's inputs (the same mask and keyword arguments)."""
    return [((layer(*args, **kwargs), *args[1:]), kwargs) for args, kwargs in inputs]


def _samples(layer: nn.Module, inputs: _LayerInputs, sublayer: _Sublayer, targets: ReconstructionTargets, index: int,
             ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Per tuning batch, at the tokens ``sublayer`` (the ``index``-th, in ``layer``) is tuned on: its units' outputs z
    (T, F) and what its projection should give, s* − x (T, d), on the pruned model's own inputs to ``layer``."""
    store: dict[str, torch.Tensor] = {}

    def keep_units(module: nn.Module, args: tuple[torch.Tensor]) -> None:
        store["units"] = args[0]

    def keep_sum(module: nn.Module, args: tuple[torch.Tensor]) -> None:
        store["sum"] = args[0]
        raise _Captured

    projection = sublayer.projection
    handles = [projection.register_forward_pre_hook(keep_units), sublayer.layer_norm.register_forward_pre_hook(keep_sum)]
    try:
        for (batch, target), (args, kwargs) in zip(zip(targets.batches, targets.sums[index]), inputs):
            try:
                layer(*args, **kwargs)
            except _Captured:
                pass
            tokens = _tokens(batch, index >= len(targets.sums) - 2)
            units, pre_norm = store["units"][tokens], store["sum"][tokens]  # (T, F), (T, d)
            yield units, target - pre_norm + projection(units)  # s* − x = s* − s + (z Wᵀ + b)
    finally:
        for handle in handles:
            handle.remove()


# --------------------------------------------------------------------------------------------
# The two solves
# --------------------------------------------------------------------------------------------
#
# scales: min_m Σ_t ‖Σ_j m_j u_tj − r_t‖², u_tj = W[:, j] z_tj (unit j's contribution), r_t = s*_t − x_t − b. Its
# normal equations G m = Aᵀr, G_jk = Σ_t u_tj · u_tk, come from Σ_t z_t z_tᵀ and W without forming the (T, units, d)
# contributions: G = blocksum_w((Σ z zᵀ) ⊙ WᵀW), Aᵀr = blocksum_w(Σ_t z_t ⊙ (Wᵀ r_t)). A ridge ‖m − 1‖² (a fraction
# of G's mean diagonal) keeps collinear or never-active units finite and where they were.
#
# refit: min_{W,b} Σ_t ‖W z_t + b − (s*_t − x_t)‖² + λ ‖W − W₀‖², with z̃ = [z; 1]: (Σ z̃ z̃ᵀ + λ D) Θ = Σ z̃ (s* − x)ᵀ
# + λ D Θ₀, Θ = [Wᵀ; bᵀ] (F + 1, d), D = diag(1, …, 1, 0) (the bias is not pulled), λ a fraction of the mean diagonal.
#
# Sums over tokens in float64: the per-batch products come in the model's precision, their totals need more.


def _solve_scales(samples: Iterable[tuple[torch.Tensor, torch.Tensor]], sublayer: _Sublayer, ridge: float
                  ) -> torch.Tensor:
    weight = sublayer.projection.weight  # (d, F)
    features = weight.shape[1]
    moment = torch.zeros(features, features, dtype=torch.float64, device=weight.device)  # Σ_t z_t z_tᵀ
    projected = torch.zeros(features, dtype=torch.float64, device=weight.device)  # Σ_t z_t ⊙ (Wᵀ r_t)
    for units, wanted in samples:
        residual = wanted - sublayer.projection.bias  # r_t = s* − x − b: (T, d)
        moment += units.T @ units
        projected += (units * (residual @ weight)).sum(0)
    count, weight = features // sublayer.width, weight.double()
    gram = (moment * (weight.T @ weight)).reshape(count, sublayer.width, count, sublayer.width).sum(dim=(1, 3))
    rhs = projected.reshape(count, sublayer.width).sum(1)
    damping = ridge * gram.diagonal().mean().clamp_min(1e-30)
    eye = torch.eye(count, dtype=torch.float64, device=gram.device)
    return torch.linalg.solve(gram + damping * eye, rhs + damping)  # the ridge pulls towards 1


def _solve_refit(samples: Iterable[tuple[torch.Tensor, torch.Tensor]], sublayer: _Sublayer, ridge: float
                 ) -> torch.Tensor:
    projection = sublayer.projection
    features, device = projection.in_features, projection.weight.device
    moment = torch.zeros(features + 1, features + 1, dtype=torch.float64, device=device)  # Σ z̃ z̃ᵀ
    cross = torch.zeros(features + 1, projection.out_features, dtype=torch.float64, device=device)  # Σ z̃ (s* − x)ᵀ
    for units, wanted in samples:
        extended = torch.cat([units, torch.ones_like(units[:, :1])], dim=1).double()  # (T, F + 1)
        moment += extended.T @ extended
        cross += extended.T @ wanted.double()
    pulled = torch.ones(features + 1, dtype=torch.float64, device=device)
    pulled[-1] = 0  # no ridge on the bias
    damping = ridge * moment.diagonal()[:-1].mean().clamp_min(1e-30) * torch.diag(pulled)
    current = torch.cat([projection.weight.T, projection.bias[None]]).double()  # Θ₀: (F + 1, d)
    return torch.linalg.solve(moment + damping, cross + damping @ current)


@torch.no_grad()
def reconstruct(pruned: nn.Module, targets: ReconstructionTargets, method: str = "scales", ridge: float = 1e-6,
                max_scale: float = 10.0, stop_at_failure: bool = False) -> list[dict]:
    """Reconstruct a physically pruned model in place, sublayer by sublayer, towards ``targets``
    (:func:`reconstruction_targets` of its teacher) by ``method``: ``scales`` folds each surviving unit's scale into
    the projection's columns (the model keeps no masks), ``refit`` replaces the projection's weights and bias.

    ``ridge``: the ridge weight as a fraction of the mean diagonal of the normal equations. A sublayer whose solution
    is not finite, or whose scales leave ±``max_scale``, is left as it is; with ``stop_at_failure`` the tuning ends
    there (Kwon et al.). Returns one record per sublayer with units: whether it was tuned, and the scales' range.
    """
    if method not in RECONSTRUCTION_METHODS:
        raise ValueError(f"reconstruction method {method!r}: accepted {list(RECONSTRUCTION_METHODS)}")
    pruned.eval()
    sublayers, layers, records, stopped = _sublayers(pruned), encoder_layers(pruned), [], False
    inputs = _first_layer_inputs(pruned, targets.batches)
    for index, sublayer in enumerate(sublayers):
        layer = layers[index // 2]
        if sublayer.projection.in_features:  # else no units left: nothing to reconstruct
            record = {"sublayer": index, "kind": "attention" if index % 2 == 0 else "ffn", "tuned": False}
            records.append(record)
            if not stopped:
                record["tuned"] = _tune(sublayer, _samples(layer, inputs, sublayer, targets, index), method, ridge,
                                        max_scale, record)
                stopped = stop_at_failure and not record["tuned"]
        if index % 2 == 1 and index + 1 < len(sublayers):  # the layer is done: its outputs feed the next one
            inputs = _next_layer_inputs(layer, inputs)
    return records


def _tune(sublayer: _Sublayer, samples: Iterable[tuple[torch.Tensor, torch.Tensor]], method: str, ridge: float,
          max_scale: float, record: dict) -> bool:
    """Solve ``sublayer`` by ``method`` on ``samples`` and write the solution into its projection; False (and the
    projection left as it is) where the solve fails. The scales' range goes into ``record``."""
    projection = sublayer.projection
    if method == "scales":
        scales = _solve_scales(samples, sublayer, ridge)
        record |= {"scale_min": float(scales.min()), "scale_max": float(scales.max())}
        if not (scales.isfinite().all() and scales.abs().max() <= max_scale):
            return False
        projection.weight.mul_(scales.repeat_interleave(sublayer.width).to(projection.weight))
        return True
    solution = _solve_refit(samples, sublayer, ridge)
    if not solution.isfinite().all():
        return False
    projection.weight.copy_(solution[:-1].T)
    projection.bias.copy_(solution[-1])
    return True
