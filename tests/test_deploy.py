"""Models pruned before fine-tuning as deployable ONNX: exported, checked against PyTorch, timed in onnxruntime."""

import json

import pytest

from conftest import make_sentences
from mcap.deploy import deploy_finetuned
from mcap.ffn import prune_neurons
from mcap.heads import prune_heads
from mcap.params import EvaluateSettings, Int8Settings
from mcap.structured_report import before_finetuning_rows

TIMING = EvaluateSettings(threads=1, batch_sizes=[1, 4], warmup=1, repetitions=3, flops_seq_len=16)


def test_a_pruned_model_is_exported_checked_and_timed_against_its_unpruned_architecture(tiny_model, tmp_path):
    model, tokenizer = tiny_model
    prune_heads(model, {0: [1, 2], 1: [0]})
    prune_neurons(model, {0: range(0, 64, 2)})
    result = deploy_finetuned(model, tokenizer, make_sentences(10, seed=2), TIMING, 32, tmp_path / "model.onnx",
                              Int8Settings(enabled=True, per_channel=False))
    assert sorted(tmp_path.iterdir()) == [tmp_path / "model-int8.onnx", tmp_path / "model.onnx"]  # no reference left
    assert result["onnx_max_abs_diff"] < 1e-4 and result["precision"] == "fp32"
    assert set(result["speedup"]) == {"onnx_batch_1", "onnx_batch_4"}
    assert all(value["median"] > 0 and value["repetitions"] == 3 for value in result["speedup"].values())
    assert {"mcc", "accuracy", "loss"} <= set(result["test"])
    quantized = result["int8"]  # against the unpruned architecture's FP32 model
    assert set(quantized["speedup"]) == {"onnx_int8_batch_1", "onnx_int8_batch_4"} and not quantized["per_channel"]
    assert quantized["agreement_with_fp32"] >= 0.9 and quantized["max_abs_logit_difference"] < 0.05


def test_the_structured_report_takes_the_onnx_speed_ups_of_deployed_strategies_only(tmp_path):
    def write(path, payload):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(payload))

    latency = {}
    for strategy, kind, torch_speedup in (("none", "none", 1.0), ("head_gradient", "head", 1.2),
                                          ("structured_gradient", "structured", 1.5)):
        write(tmp_path / "prune" / "sst2" / f"{strategy}-0.2" / "seed-1" / "heads.json",
              {"kind": kind, "removed_mac_fraction": 0.2})
        latency[f"{strategy}-0.2/seed-1"] = {"speedup": {f"batch_{size}": {"median": torch_speedup} for size in (1, 32)}}
        for seed, onnx_speedup in ((42, 1.6), (43, 1.8)):
            write(tmp_path / "cells" / "sst2" / f"{strategy}-0.2" / f"seed-{seed}.json",
                  {"runs": {"1": {"test": {"mcc": 0.5}}}})
            write(tmp_path / "deploy" / "sst2" / f"{strategy}-0.2" / f"seed-{seed}.json",
                  {"1": {"speedup": {f"onnx_batch_{size}": {"median": onnx_speedup} for size in (1, 32)}}})
    write(tmp_path / "latency" / "sst2.json", latency)
    rows = {row["strategy"]: row for row in before_finetuning_rows(
        tmp_path, ["sst2"], ["none", "head_gradient", "structured_gradient"], ["structured_gradient"], [0.2], [42, 43])}
    assert rows["structured_gradient"]["speedup_onnx_b32"] == pytest.approx(1.7)  # the mean over the seeds
    assert rows["structured_gradient"]["speedup_torch_b32"] == pytest.approx(1.5)
    assert rows["head_gradient"]["speedup_onnx_b32"] != rows["head_gradient"]["speedup_onnx_b32"]  # NaN: not deployed

