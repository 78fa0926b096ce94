"""Reconstruction after structured pruning: per-unit scales (Kwon et al.'s mask tuning) and the refit of each
sublayer's output projection, towards the unpruned model or Kwon et al.'s nearer teacher."""

import copy
import math

import pytest
import torch

from mcap.reconstruction import reconstruct, reconstruction_targets, relative_errors, teacher_ratio
from mcap.structured import StructuredSelection, remove_units
from test_structured import labelled_batches


def tuned_count(records: list[dict]) -> tuple[int, int]:
    """(sublayers with units, sublayers tuned)."""
    return len(records), sum(record["tuned"] for record in records)


def pre_norm_sums(model, batches, layer: int, sublayer: str) -> torch.Tensor:
    """The input of layer ``layer``'s attention ("attention") or FFN ("ffn") LayerNorm on every real token: (T, d)."""
    encoder_layer = model.base_model.encoder.layer[layer]
    norm = (encoder_layer.attention.output if sublayer == "attention" else encoder_layer.output).LayerNorm
    captured = []
    handle = norm.register_forward_pre_hook(lambda module, inputs: captured.append(inputs[0]))
    with torch.no_grad():
        for batch in batches:
            model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
            captured[-1] = captured[-1][batch["attention_mask"].bool()]
    handle.remove()
    return torch.cat(captured)


def logits_of(model, batch) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits


@pytest.fixture
def pruned_pair(tiny_model):
    """The tiny model in float64 (so least-squares optimality shows above rounding), a pruned copy (half of
    layer 0's neurons, a head of layer 1) and labelled batches."""
    model, tokenizer = tiny_model
    model.double()
    pruned = copy.deepcopy(model)
    remove_units(pruned, StructuredSelection(heads={1: [2]}, neurons={0: list(range(0, 64, 2))}, removed_macs=0,
                                             total_macs=1))
    return model, pruned, labelled_batches(tokenizer)


def squared_error(model, unpruned, batches, layer: int, sublayer: str) -> float:
    return float((pre_norm_sums(model, batches, layer, sublayer) - pre_norm_sums(unpruned, batches, layer, sublayer))
                 .pow(2).sum())


def test_mask_tuning_brings_a_pruned_sublayer_to_the_least_squares_optimum_of_its_reconstruction(pruned_pair):
    import copy

    
    model, pruned, batches = pruned_pair
    tuned = copy.deepcopy(pruned)
    # 4 sublayers with units; on 12 sentences the last FFN's fit to [CLS] alone may overshoot the bound.
    assert len(reconstruct(tuned, reconstruction_targets(model, batches))) == 4
    error = {name: squared_error(m, model, batches, 0, "ffn") for name, m in (("untuned", pruned), ("tuned", tuned))}
    assert error["tuned"] < 0.9 * error["untuned"]
    # Any other scales of layer 0's surviving neurons reconstruct worse: the tuned ones are the optimum.
    generator = torch.Generator().manual_seed(4)
    for _ in range(3):
        nudged = copy.deepcopy(tuned)
        down = nudged.base_model.encoder.layer[0].output.dense
        with torch.no_grad():
            down.weight.mul_(1 + 1e-2 * torch.randn(down.in_features, generator=generator, dtype=torch.float64))
        assert squared_error(nudged, model, batches, 0, "ffn") > error["tuned"]


def test_mask_tuning_leaves_an_unpruned_model_as_it_is_and_a_sublayer_whose_scales_leave_the_bound_untuned(pruned_pair):
    import copy

    
    model, pruned, batches = pruned_pair
    unchanged = copy.deepcopy(model)
    assert tuned_count(reconstruct(unchanged, reconstruction_targets(model, batches))) == (4, 4)
    assert torch.allclose(logits_of(unchanged, batches[0]), logits_of(model, batches[0]), atol=1e-4)
    bounded = copy.deepcopy(pruned)
    records = reconstruct(bounded, reconstruction_targets(model, batches), max_scale=0.5)
    assert tuned_count(records) == (4, 0) and all(r["scale_max"] > 0.5 for r in records)  # scales near 1 > 0.5
    assert torch.equal(logits_of(bounded, batches[0]), logits_of(pruned, batches[0]))


def test_mask_tuning_of_a_float32_model_gives_the_float64_scales(pruned_pair):
    """Per-batch moments in the model's float32 are accumulated in float64: the scales match a float64 model's."""
    
    model, pruned, batches = pruned_pair
    tuned = {}
    for dtype in (torch.float64, torch.float32):
        unpruned, candidate = copy.deepcopy(model).to(dtype), copy.deepcopy(pruned).to(dtype)
        reconstruct(candidate, reconstruction_targets(unpruned, batches), max_scale=math.inf)
        tuned[dtype] = candidate.base_model.encoder.layer[0].output.dense.weight.double()
    untuned = pruned.base_model.encoder.layer[0].output.dense.weight
    assert not torch.allclose(tuned[torch.float64], untuned, rtol=1e-3)  # the tuning did change the scales
    assert torch.allclose(tuned[torch.float32], tuned[torch.float64], rtol=1e-4, atol=1e-6)


def test_mask_tuning_skips_a_sublayer_without_units_and_reconstructs_only_cls_in_the_last_layer(tiny_model):
    
    model, tokenizer = tiny_model
    model.double()
    batches = labelled_batches(tokenizer)
    pruned = copy.deepcopy(model)
    remove_units(pruned, StructuredSelection(heads={0: [0, 1, 2, 3]}, neurons={1: list(range(0, 64, 2))},
                                             removed_macs=0, total_macs=1))
    tuned = copy.deepcopy(pruned)
    # Layer 0's attention has no heads. Unbounded: on a random model the last FFN's [CLS] fit is ill-conditioned.
    assert tuned_count(reconstruct(tuned, reconstruction_targets(model, batches), max_scale=math.inf)) == (3, 3)

    def cls_error(candidate) -> float:
        rows = [batch["attention_mask"].sum(1) for batch in batches]  # real tokens per sentence
        starts = torch.cat([torch.zeros(1, dtype=torch.long), torch.cat(rows).cumsum(0)[:-1]])  # [CLS] rows
        difference = pre_norm_sums(candidate, batches, 1, "ffn") - pre_norm_sums(model, batches, 1, "ffn")
        return float(difference[starts].pow(2).sum())

    assert cls_error(tuned) < cls_error(pruned)


@pytest.mark.parametrize("ratio", [0.1, 0.3, 0.5, 0.6, 0.7])
def test_kwon_et_als_teacher_keeps_the_square_root_of_the_macs_the_budget_keeps(ratio):
    assert teacher_ratio(ratio) == pytest.approx(1 - math.sqrt(1 - ratio))
    assert (1 - teacher_ratio(ratio)) ** 2 == pytest.approx(1 - ratio)  # kept by the teacher, squared = kept
    assert 0 < teacher_ratio(ratio) < ratio  # nearer the unpruned model than the pruned one


def test_the_refit_exactly_reconstructs_a_removed_neuron_that_a_kept_one_duplicates(tiny_model):
    """Neuron 5 of layer 0 computes what neuron 3 computes: once it is removed, the refit folds its down-projection
    into neuron 3's and the model is whole again; one scale per unit cannot, as their down-projections differ."""
    model, tokenizer = tiny_model
    model.double()
    ffn = model.base_model.encoder.layer[0]
    with torch.no_grad():
        ffn.intermediate.dense.weight[5] = ffn.intermediate.dense.weight[3]
        ffn.intermediate.dense.bias[5] = ffn.intermediate.dense.bias[3]
    batches = labelled_batches(tokenizer)
    pruned = copy.deepcopy(model)
    remove_units(pruned, StructuredSelection(heads={}, neurons={0: [5]}, removed_macs=0, total_macs=1))
    targets = reconstruction_targets(model, batches)
    refit, scaled = copy.deepcopy(pruned), copy.deepcopy(pruned)
    assert tuned_count(reconstruct(refit, targets, "refit", ridge=1e-12)) == (4, 4)
    reconstruct(scaled, targets, "scales", max_scale=math.inf)
    errors = {name: relative_errors(m, targets) for name, m in (("pruned", pruned), ("refit", refit), ("scaled", scaled))}
    assert max(errors["refit"]) < 1e-12  # every sublayer, the one that lost the neuron (1) and all after it
    assert errors["pruned"][1] >= errors["scaled"][1] > 1e4 * max(errors["refit"][1], 1e-16)
    assert torch.allclose(logits_of(refit, batches[0]), logits_of(model, batches[0]), atol=1e-9)


def test_the_refit_is_the_ridge_least_squares_solution_and_changes_nothing_the_targets_already_hold(pruned_pair):
    model, pruned, batches = pruned_pair
    unchanged = copy.deepcopy(model)
    reconstruct(unchanged, reconstruction_targets(model, batches), "refit", ridge=1e-3)
    assert torch.allclose(logits_of(unchanged, batches[0]), logits_of(model, batches[0]), atol=1e-8)
    refit = copy.deepcopy(pruned)
    reconstruct(refit, reconstruction_targets(model, batches), "refit", ridge=1e-3)
    errors = {name: relative_errors(m, reconstruction_targets(model, batches))[1]
              for name, m in (("pruned", pruned), ("refit", refit))}
    assert errors["refit"] < 0.5 * errors["pruned"]  # layer 0's FFN, half of its neurons removed


@pytest.mark.parametrize("stop", [False, True])
def test_a_failed_sublayer_is_skipped_or_with_kwon_et_als_rule_ends_the_reconstruction(pruned_pair, monkeypatch, stop):
    import mcap.reconstruction

    model, pruned, batches = pruned_pair
    solve, calls = mcap.reconstruction._solve_scales, []

    def failing_first(samples, sublayer, ridge):
        calls.append(sublayer)
        scales = solve(samples, sublayer, ridge)
        return scales * math.inf if len(calls) == 1 else scales

    monkeypatch.setattr(mcap.reconstruction, "_solve_scales", failing_first)
    records = reconstruct(copy.deepcopy(pruned), reconstruction_targets(model, batches), max_scale=math.inf,
                          stop_at_failure=stop)
    assert [record["tuned"] for record in records] == ([False] * 4 if stop else [False, True, True, True])
    assert len(calls) == (1 if stop else 4)


def test_a_model_reconstructs_its_own_sums_with_no_error_and_an_unknown_method_is_refused(pruned_pair):
    model, pruned, batches = pruned_pair
    assert relative_errors(model, reconstruction_targets(model, batches)) == [0.0] * 4
    with pytest.raises(ValueError, match="'prune': accepted \\['scales', 'refit'\\]"):
        reconstruct(pruned, reconstruction_targets(model, batches), "prune")
