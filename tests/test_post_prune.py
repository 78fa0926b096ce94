"""Structured pruning after fine-tuning: budgets met, ONNX models written and checked, both runtimes timed."""

import copy
import json

import pytest
import torch

from conftest import make_sentences
from mcap.architecture_latency import layout_twin, post_prune_layouts, time_layouts
from mcap.budget import UnitCosts
from mcap.errors import McapError
from mcap.ffn import count_neurons, ffn_layout
from mcap.heads import count_heads, head_layout, prune_heads
from mcap.params import EvaluateSettings, Int8Settings, PostPruneSettings, TrainSettings
from mcap.post_prune import fisher_sample, onnx_name, prune_after_finetuning
from mcap.post_prune_files import layout_key
from mcap.structured import select_learned

TIMING = EvaluateSettings(threads=1, batch_sizes=[1, 4], warmup=1, repetitions=3, flops_seq_len=16)


RECONSTRUCTIONS = ["scales/unpruned", "scales/kwon_sqrt", "refit/unpruned", "refit/kwon_sqrt"]


NO_INT8, INT8 = Int8Settings(enabled=False, per_channel=False), Int8Settings(enabled=True, per_channel=True)


def run(tiny_model, tmp_path, reconstructions=RECONSTRUCTIONS, ratios=(0.3, 0.6), learned_scores=None, int8=NO_INT8,
        recoveries=()):
    model, tokenizer = tiny_model
    settings = PostPruneSettings(mac_ratios=list(ratios), examples=24, held_out_examples=16,
                                 reconstructions=list(reconstructions), refit_ridge=1e-3, stop_at_failure=False,
                                 learned=[], recoveries=list(recoveries), recovery_mac_ratios=list(ratios[-1:]))
    training = TrainSettings(epochs=1, learning_rates=[1e-3], batch_size=8, max_seq_len=32, weight_decay=0.01,
                             warmup_ratio=0.1, select_metric="mcc")
    return prune_after_finetuning(model, tokenizer, make_sentences(40, seed=1), make_sentences(10, seed=3),
                                  make_sentences(12, seed=2), settings, TIMING.threads, int8, 32, tmp_path,
                                  learned_scores, training=training, seed=3)


def test_each_budget_gives_a_checked_onnx_model_and_its_layout_within_its_mac_budget(tiny_model, tmp_path):
    results = run(tiny_model, tmp_path)
    assert results["ranking"] == "fisher" and results["fisher_examples"] == 24 and (tmp_path / onnx_name(None)).is_file()
    assert [budget["mac_ratio"] for budget in results["budgets"]] == [0.3, 0.6]
    previous_neurons = 2 * 64
    for budget in results["budgets"]:
        assert budget["mac_ratio"] - 0.05 < budget["removed_mac_fraction"] <= budget["mac_ratio"]
        assert budget["ffn_neurons"] < previous_neurons  # a larger budget removes more
        previous_neurons = budget["ffn_neurons"]
        assert (tmp_path / onnx_name(budget["mac_ratio"])).is_file()
        assert budget["onnx_max_abs_diff"] < 1e-4
        assert sum(map(len, budget["kept_heads"])) == budget["heads"]  # the layout the timing stage builds
        assert sum(budget["intermediate_sizes"]) == budget["ffn_neurons"] and "speedup" not in budget
        assert {"mcc", "accuracy", "loss"} <= set(budget["test"])


def test_every_reconstruction_is_scored_beside_none_and_the_best_on_validation_is_deployed(tiny_model, tmp_path):
    results = run(tiny_model, tmp_path)
    assert (results["tuning_examples"], results["held_out_examples"], results["validation_examples"]) == (24, 16, 10)
    for budget in results["budgets"]:
        scored = budget["reconstructions"]
        assert list(scored) == ["none", *RECONSTRUCTIONS] and budget["test_without_tuning"] == scored["none"]["test"]
        best = max(scored[name]["validation"]["mcc"] for name in scored)
        assert scored[budget["chosen"]]["validation"]["mcc"] == best  # chosen on validation, never on test
        assert budget["test"] == scored[budget["chosen"]]["test"]  # the deployed model is the chosen one
        for name in RECONSTRUCTIONS:
            sublayers = scored[name]["sublayers"]
            assert 0 < sum(s["tuned"] for s in sublayers) <= len(sublayers) <= 4
            for sublayer in sublayers:
                assert sublayer["error_tuning_before"] > 0 and sublayer["error_held_out_before"] > 0
                assert all(sublayer[f"error_{sentences}_{when}"] >= 0 for sentences in ("tuning", "held_out")
                           for when in ("before", "after"))
        # on its own tuning sentences, the refit reconstructs at least as well as the scales (it can represent them)
        for teacher in ("unpruned", "kwon_sqrt"):
            refit, scales = (scored[f"{method}/{teacher}"]["sublayers"] for method in ("refit", "scales"))
            assert refit[0]["error_tuning_after"] <= scales[0]["error_tuning_after"] * (1 + 1e-3)


def test_recoveries_retrain_the_chosen_model_at_their_budgets_and_export_it_checked(tiny_model, tmp_path):
    results = run(tiny_model, tmp_path, reconstructions=("scales/unpruned",), ratios=(0.3, 0.6), int8=INT8,
                  recoveries=("distill", "cross_entropy"))
    unrecovered, budget = results["budgets"]
    assert "recovered" not in unrecovered and list(budget["recovered"]) == ["distill", "cross_entropy"]
    for name, record in budget["recovered"].items():
        assert (tmp_path / onnx_name(0.6, name)).is_file() and record["onnx_max_abs_diff"] < 1e-4
        assert (record["train_sentences"], record["steps"]) == (40, 5)  # one pass over the train sentences
        assert {"mcc", "accuracy", "loss"} <= set(record["validation"]) and record["test"] != budget["test"]
        assert record["int8"]["agreement_with_fp32"] > 0.5 and (tmp_path / f"macs-removed-0.6-{name}-int8.onnx").is_file()
    assert budget["recovered"]["distill"]["test"] != budget["recovered"]["cross_entropy"]["test"]


def test_without_reconstructions_the_pruned_model_is_deployed_as_it_is(tiny_model, tmp_path):
    budget = run(tiny_model, tmp_path, reconstructions=(), ratios=(0.3,))["budgets"][0]
    assert list(budget["reconstructions"]) == ["none"] and budget["chosen"] == "none"
    assert budget["test"] == budget["test_without_tuning"]


def test_rearranged_masks_keep_each_budgets_shapes_and_the_searched_models_quality_is_recorded(tiny_model, tmp_path):
    from mcap.structured import rearrange_masks, remove_units, select_units, unit_statistics
    from mcap.training import classification_metrics, make_loader, predict_logits

    model, tokenizer = tiny_model
    results = run(tiny_model, tmp_path, reconstructions=(), ratios=(0.3, 0.6))
    assert results["mask_rearrangement"] is True
    statistics = unit_statistics(model, list(make_loader(tokenizer, make_sentences(40, seed=1).head(24), 32, 32)),
                                 blocks=True)
    quality = list(make_loader(tokenizer, make_sentences(12, seed=2), 32, 32))
    for budget in results["budgets"]:
        searched = select_units(torch.stack(statistics.head_fisher), statistics.neuron_fisher,
                                UnitCosts.of(model.config, 32), budget["mac_ratio"])
        searched_model, rearranged_model = copy.deepcopy(model), copy.deepcopy(model)
        remove_units(searched_model, searched)
        remove_units(rearranged_model, rearrange_masks(searched, statistics))
        assert budget["heads"] == count_heads(searched_model) == count_heads(rearranged_model)  # same counts, MACs
        assert budget["ffn_neurons"] == count_neurons(searched_model)
        assert budget["test_without_rearrangement"] == classification_metrics(*predict_logits(searched_model, quality))
        assert budget["test"] == classification_metrics(*predict_logits(rearranged_model, quality))
        assert 0 <= budget["rearranged_units"] <= 2 * 64 + 8
    assert any(budget["rearranged_units"] > 0 for budget in results["budgets"])  # it does move units here


def test_each_budget_is_ranked_by_the_scores_of_the_controller_trained_at_it(tiny_model, tmp_path):
    """structured_mcap after fine-tuning: at each budget the units go in increasing score of that budget's controller
    (tiny model: 2 layers x 4 heads, FFN 64 in groups of 16)."""
    heads = [[0.9, 0.1, 0.8, 0.7], [0.6, 0.5, 0.95, 0.2]]  # heads (0, 1) and (1, 3) lowest
    groups = [[0.99] * 4, [0.05, 0.99, 0.99, 0.99]]  # layer 1's first group lowest of all
    at_20 = {"heads": heads, "neuron_groups": groups, "neuron_group_size": 16}
    at_30 = {"heads": [[0.99] * 4] * 2, "neuron_groups": [[0.1, 0.2, 0.3, 0.4], [0.5] * 4], "neuron_group_size": 16}
    results = run(tiny_model, tmp_path, reconstructions=(), ratios=(0.2, 0.3), learned_scores={0.2: at_20, 0.3: at_30})
    first, second = results["budgets"]
    assert results["ranking"] == "meta-controller" and "fisher_examples" not in results
    costs = UnitCosts.of(tiny_model[0].config, 32)
    assert first["ffn_neurons"] == 2 * 64 - 16 and first["heads"] == 8 - 2  # the group and the two lowest heads
    assert first["removed_mac_fraction"] == pytest.approx((16 * costs.neuron + 2 * costs.head)
                                                          / costs.encoder_macs(8, 128))
    expected = select_learned(at_30, 64, costs, 0.3)  # the 0.3 controller's order: FFN groups before any head
    assert second["heads"] == 8 - sum(map(len, expected.heads.values())) and expected.neurons
    assert second["ffn_neurons"] == 2 * 64 - sum(map(len, expected.neurons.values()))
    assert first["onnx_max_abs_diff"] < 1e-4 and second["onnx_max_abs_diff"] < 1e-4


def test_a_model_pruned_before_is_refused_and_nothing_is_written(tiny_model, tmp_path):
    prune_heads(tiny_model[0], {0: [1]})
    with pytest.raises(McapError, match="without pruning"):
        run(tiny_model, tmp_path / "out")
    assert not (tmp_path / "out").exists()



def test_int8_models_of_the_unpruned_model_and_each_budget_are_checked_against_fp32(tiny_model, tmp_path):
    from mcap.quantize import int8_features

    results = run(tiny_model, tmp_path, reconstructions=(), ratios=(0.3,), int8=INT8)
    for name, record in (("unpruned", results["unpruned"]), ("macs-removed-0.3", results["budgets"][0])):
        quantized = record["int8"]
        assert (tmp_path / f"{name}-int8.onnx").is_file()
        assert quantized["per_channel"] is True and quantized["cpu_features"] == int8_features()
        assert quantized["reduce_range"] is not int8_features()["vnni"]  # 7-bit weights where the CPU lacks VNNI
        assert quantized["agreement_with_fp32"] >= 0.9 and quantized["max_abs_logit_difference"] < 0.05
        assert {"mcc", "accuracy", "loss"} <= set(quantized["test"])


def test_each_pruning_seed_draws_its_own_fisher_sample_and_held_out_sentences_apart_from_it():
    train = make_sentences(40, seed=1).reset_index(drop=True)
    tuning, held_out = fisher_sample(train, 24, 10, seed=42)
    assert (len(tuning), len(held_out)) == (24, 10) and not set(tuning.index) & set(held_out.index)
    again, _ = fisher_sample(train, 24, 10, seed=42)
    other, _ = fisher_sample(train, 24, 10, seed=43)
    assert list(again.index) == list(tuning.index) and set(other.index) != set(tuning.index)
    everything, rest = fisher_sample(train, 100, 10, seed=42)  # more asked than there are: all of them, none held out
    assert sorted(everything.index) == list(train.index) and rest.empty


def test_each_distinct_architecture_is_timed_once_in_both_runtimes_and_int8_against_the_unpruned_one(tiny_model,
                                                                                                    tmp_path):
    model, tokenizer = tiny_model
    results = [run(tiny_model, tmp_path / "a", reconstructions=(), ratios=(0.3, 0.6)),
               run(tiny_model, tmp_path / "b", reconstructions=(), ratios=(0.3,))]  # the same sweep: the same layout
    layouts = post_prune_layouts(results)
    assert len(layouts) == 2
    records = time_layouts(model, tokenizer, layouts, make_sentences(12, seed=2), TIMING, 32, INT8)
    unpruned = layout_key(head_layout(model), ffn_layout(model))
    assert set(records) == {unpruned, *layouts}
    for key, record in records.items():
        assert set(record["speedup"]) == {"batch_1", "batch_4"}  # PyTorch, against the unpruned architecture
        assert set(record["onnx"]["speedup"]) == {f"onnx{kind}_batch_{size}" for kind in ("", "_int8") for size in (1, 4)}
        assert all(value["median"] > 0 and value["repetitions"] == 3 for value in record["onnx"]["speedup"].values())
        assert record["heads"] == sum(json.loads(key)["heads"]) and record["ffn_neurons"] == sum(json.loads(key)["ffn"])
    budget = results[0]["budgets"][1]
    twin = layout_twin(model, budget["kept_heads"], budget["intermediate_sizes"])
    assert layout_key(head_layout(twin), ffn_layout(twin)) == layout_key(budget["kept_heads"],
                                                                         budget["intermediate_sizes"])
