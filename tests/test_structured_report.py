"""The structured comparison: rows per mode and precision with paired ΔMCC, and the targets read off them."""

import math

import pandas as pd
import pytest

from mcap.errors import McapError
from mcap.outputs import write_json
from mcap.post_prune_files import layout_key
from mcap.structured_report import (
    after_finetuning_rows,
    best_per_mode,
    reconstruction_lines,
    reconstruction_rows,
    render_markdown,
    structured_table,
    target_lines,
    timing_cpu,
)


def row(mode: str, ratio: float, delta: float, low: float, onnx_b32: float, precision="fp32",
        strategy="structured_gradient"):
    return {"task": "sst2", "strategy": strategy, "mode": mode, "precision": precision, "mac_ratio": ratio, "n": 3,
            "mcc_mean": 0.8 + delta, "mcc_std": 0.01, "mcc_delta": delta, "mcc_delta_low": low,
            "mcc_delta_high": delta + 0.01, "speedup_torch_b32": 1.0, "speedup_onnx_b32": onnx_b32,
            "speedup_torch_b1": 1.0, "speedup_onnx_b1": 1.0, "mcc_without_tuning_mean": math.nan,
            "mcc_without_rearrangement_mean": math.nan}


def test_each_target_is_read_off_the_fastest_structured_row_within_one_mcc_point():
    table = structured_table([
        row("", 0.0, 0.0, 0.0, 1.0, strategy="none"),
        row("after", 0.3, -0.005, -0.015, 1.6),
        row("after", 0.6, -0.005, -0.03, 2.5),     # its interval reaches below -2 points: not within
        row("distill", 0.6, -0.008, -0.018, 2.1),
        row("after", 0.6, -0.009, -0.019, 2.9, precision="int8"),
        row("before", 0.7, -0.001, -0.002, 9.0, strategy="head_random"),  # head-only rows never count
    ])
    retraining_free, distilled, int8 = target_lines(table)
    assert "after, retraining-free FP32 ≥ 1.5×: reached, best 1.60× (after, retraining-free, 30%" in retraining_free
    assert "after, distilled FP32 ≥ 2×: reached, best 2.10×" in distilled and "ΔMCC -0.8 [-1.8, +0.2]" in distilled
    assert "pruned INT8 ≥ 3×: not reached, best 2.90×" in int8
    markdown = render_markdown(table, "setup")
    assert markdown.count("\n| structured_gradient |") == 4 and "| head_random | before fine-tuning | FP32 | 70% |" in markdown


def test_the_fastest_row_within_one_point_is_picked_per_mode_and_precision_across_families(tmp_path):
    table = structured_table([
        row("", 0.0, 0.0, 0.0, 1.0, strategy="none"),
        row("", 0.0, -0.002, -0.01, 2.2, precision="int8", strategy="none"),  # unpruned: not a pruned model
        row("before", 0.3, -0.005, -0.015, 1.3),
        row("before", 0.5, -0.005, -0.015, 1.8, strategy="layer_drop"),
        row("before", 0.7, -0.02, -0.03, 4.0, strategy="head_random"),  # more than a point lost
        row("after", 0.3, -0.005, -0.015, 1.6),
        row("after", 0.6, -0.005, -0.03, 2.5),  # its interval reaches below -2 points
        row("after", 0.6, -0.009, -0.019, 2.9, precision="int8"),
        row("distill", 0.6, -0.05, -0.06, 2.1),  # no distilled model within a point: no row
    ])
    table.to_csv(tmp_path / "sst2.csv", index=False)  # the README reads it back: empty modes come back as NaN
    best = best_per_mode(pd.read_csv(tmp_path / "sst2.csv"))
    picked = {(r.mode, r.precision): (r.strategy, r.speedup_onnx_b32) for r in best.itertuples()}
    assert picked == {("before", "fp32"): ("layer_drop", 1.8), ("after", "fp32"): ("structured_gradient", 1.6),
                      ("after", "int8"): ("structured_gradient", 2.9)}
    assert "## The fastest model within one MCC point, per mode and precision" in render_markdown(table, "setup")


def test_a_target_without_a_run_within_one_point_or_without_an_interval_is_not_reached():
    far = structured_table([row("after", 0.5, -0.2, -0.25, 3.0)])
    assert "not reached, no run within one MCC point" in target_lines(far)[0]
    one_seed = structured_table([row("after", 0.5, -0.001, math.nan, 3.0)])
    assert "(one seed: no interval)" in target_lines(one_seed)[0] and "distilled FP32 ≥ 2×: not run" in target_lines(
        one_seed)[1]


def test_no_target_is_read_off_a_model_that_has_not_learnt_its_task():
    table = structured_table([row("", 0.0, 0.0, 0.0, 1.0, strategy="none") | {"mcc_mean": 0.0},
                              row("after", 0.6, 0.0, 0.0, 1.5) | {"mcc_mean": 0.0}])
    (line,) = target_lines(table)
    assert "has not learnt the task" in line and "reached" not in line


def test_after_fine_tuning_rows_pair_every_mode_and_precision_with_the_unpruned_model_of_its_seed(tmp_path):
    def speedup(prefix, value):
        return {f"{prefix}_batch_{size}": {"median": value} for size in (1, 32)}

    def timed(torch_value, onnx, int8):  # a post_prune_latency record
        return {"speedup": {f"batch_{size}": {"median": torch_value} for size in (1, 32)},
                "onnx": {"speedup": speedup("onnx", onnx) | speedup("onnx_int8", int8)}}

    layouts = {42: ([[0, 1], [0]], [64, 32]), 43: ([[0, 1], [2, 3]], [64, 32])}  # each budget's own architecture
    timings = {layout_key(*layouts[42]): timed(1.3, 1.4, 2.5), layout_key(*layouts[43]): timed(1.5, 1.6, 2.7),
               layout_key([[0, 1, 2, 3]] * 2, [64, 64]): timed(1.0, 1.0, 1.9)}

    def budget(seed, mcc, untuned, searched, int8, distilled):
        return {"mac_ratio": 0.4, "test": {"mcc": mcc}, "test_without_tuning": {"mcc": untuned},
                "test_without_rearrangement": {"mcc": searched}, "kept_heads": layouts[seed][0],
                "intermediate_sizes": layouts[seed][1], "int8": {"test": {"mcc": int8}},
                "recovered": {"distill": {"test": {"mcc": distilled}, "int8": {"test": {"mcc": distilled - 0.01}}}}}

    for seed, (unpruned, mcc, untuned, searched, int8, distilled) in {
            42: (0.80, 0.78, 0.76, 0.70, 0.77, 0.79), 43: (0.90, 0.86, 0.84, 0.80, 0.85, 0.89)}.items():
        write_json(tmp_path / f"seed-{seed}" / "sample-7.json", {
            "unpruned": {"test": {"mcc": unpruned}, "int8": {"test": {"mcc": unpruned - 0.005}},
                         "kept_heads": [[0, 1, 2, 3]] * 2, "intermediate_sizes": [64, 64]},
            "budgets": [budget(seed, mcc, untuned, searched, int8, distilled)]})
    rows = {(r["mode"], r["precision"]): r for r in after_finetuning_rows({"sst2": tmp_path}, "structured_gradient",
                                                                          [42, 43], [7], {"sst2": timings})}
    assert list(rows) == [("", "int8"), ("after", "fp32"), ("after", "int8"), ("distill", "fp32"), ("distill", "int8")]
    after = rows[("after", "fp32")]
    assert after["n"] == 2 and math.isclose(after["mcc_mean"], 0.82) and math.isclose(after["mcc_delta"], -0.03)
    assert after["mcc_delta_low"] <= -0.04 + 1e-9 and after["mcc_delta_high"] >= -0.02 - 1e-9  # the two pairs' range
    assert math.isclose(after["mcc_without_tuning_mean"], 0.80) and math.isclose(after["mcc_without_rearrangement_mean"], 0.75)
    assert after["speedup_onnx_b32"] == 1.5 and after["speedup_torch_b32"] == 1.4
    assert math.isclose(rows[("", "int8")]["mcc_delta"], -0.005) and rows[("", "int8")]["speedup_onnx_b32"] == 1.9
    int8 = rows[("after", "int8")]
    assert int8["speedup_onnx_b32"] == 2.6 and math.isnan(int8["speedup_torch_b32"]) and math.isclose(int8["mcc_delta"], -0.04)
    distilled = rows[("distill", "fp32")]
    assert math.isclose(distilled["mcc_delta"], -0.01) and distilled["speedup_onnx_b32"] == 1.5  # the budget's timing
    assert rows[("distill", "int8")]["speedup_onnx_b32"] == 2.6 and math.isnan(distilled["mcc_without_tuning_mean"])


def test_each_reconstruction_is_paired_with_none_and_the_per_unit_scales_on_the_same_pruned_model(tmp_path):
    # refit gains 2 MCC points on every pruned model (± 0.1): its interval excludes 0, though the Fisher sample moves
    # MCC by 10 points (pairing within each pruned model cancels it); the scales move nothing but noise
    noise = {42: 0.001, 43: -0.001, 44: 0.0}
    for seed, jitter in noise.items():
        for sample in (1, 2):
            none = {"mcc": 0.60 + 0.05 * (seed - 42) + 0.1 * sample, "loss": 0.5}
            methods = {"none": none, "scales/unpruned": {"mcc": none["mcc"] + 2 * jitter, "loss": 0.5 - jitter},
                       "refit/kwon_sqrt": {"mcc": none["mcc"] + 0.02 + jitter * sample, "loss": 0.45}}
            write_json(tmp_path / f"seed-{seed}" / f"sample-{sample}.json", {"budgets": [{
                "mac_ratio": 0.5, "test": methods["refit/kwon_sqrt"],
                "reconstructions": {name: {"test": test} for name, test in methods.items()}}]})
    table = reconstruction_rows({"sst2": tmp_path}, "structured_gradient", [42, 43, 44], [1, 2])
    rows = {(r.method, r.reference): r for r in table.itertuples()}
    assert set(rows) == {("scales/unpruned", "none"), ("refit/kwon_sqrt", "none"), ("chosen", "none"),
                         ("none", "scales/unpruned"), ("refit/kwon_sqrt", "scales/unpruned"),
                         ("chosen", "scales/unpruned")}
    refit = rows[("refit/kwon_sqrt", "none")]
    assert math.isclose(refit.mcc_delta, 0.02) and refit.mcc_delta_low > 0 and math.isclose(refit.loss_delta, -0.05)
    scales = rows[("scales/unpruned", "none")]
    assert scales.mcc_delta_low < 0 < scales.mcc_delta_high  # noise around zero
    assert rows[("chosen", "none")].mcc_delta == refit.mcc_delta  # the method chosen on validation at every seed
    markdown = "\n".join(reconstruction_lines(table))
    assert "| 50% | refit/kwon_sqrt | none | 6 | +2.0 [" in markdown and "| better |" in markdown
    assert "| 50% | scales/unpruned | none | 6 |" in markdown and "within noise" in markdown


def test_speed_ups_from_two_kinds_of_cpu_are_refused_and_one_kind_is_named_with_its_int8_features():
    def machine(model, flags):
        return {"cpu": {"model_name": "Intel Xeon", "family": "6", "model": model, "flags": flags}, "device": "CPU x"}

    cpu = timing_cpu([machine("106", "fpu avx2 avx512f avx512_vnni"), machine("106", "fpu avx2 avx512f avx512_vnni")])
    assert cpu == "Intel Xeon (family 6, model 106); AVX2, AVX-512, AVX-512 VNNI"
    with pytest.raises(McapError, match=r"timings come from 2 kinds of CPU .*model 106.*model 85"):
        timing_cpu([machine("106", "avx2"), machine("85", "avx2")])
