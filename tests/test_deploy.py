"""Models pruned before fine-tuning as deployable ONNX: exported and checked against PyTorch per fine-tuned model,
timed in onnxruntime once per pruned architecture."""

import json

import pytest

from conftest import machine, make_sentences
from mcap.deploy import architecture_onnx_speedups, deploy_finetuned
from mcap.ffn import prune_neurons
from mcap.heads import prune_heads
from mcap.params import EvaluateSettings, Int8Settings
from mcap.structured_report import before_finetuning_rows

TIMING = EvaluateSettings(threads=1, batch_sizes=[1, 4], warmup=1, repetitions=3, flops_seq_len=16)


def tiny_pruned(tiny_model):
    model, tokenizer = tiny_model
    prune_heads(model, {0: [1, 2], 1: [0]})
    prune_neurons(model, {0: range(0, 64, 2)})
    return model, tokenizer


def test_a_fine_tuned_pruned_model_is_exported_checked_and_quantised(tiny_model, tmp_path):
    model, tokenizer = tiny_pruned(tiny_model)
    result = deploy_finetuned(model, tokenizer, make_sentences(10, seed=2), 1, 32, tmp_path / "model.onnx",
                              Int8Settings(enabled=True, per_channel=False))
    assert sorted(tmp_path.iterdir()) == [tmp_path / "model-int8.onnx", tmp_path / "model.onnx"]
    assert result["onnx_max_abs_diff"] < 1e-4 and result["precision"] == "fp32"
    assert {"mcc", "accuracy", "loss"} <= set(result["test"]) and "speedup" not in result  # timed per architecture
    quantized = result["int8"]
    assert quantized["weights"] == "QInt8" and not quantized["per_channel"]
    assert quantized["agreement_with_fp32"] >= 0.9 and quantized["max_abs_logit_difference"] < 0.05


def test_a_pruned_architecture_is_timed_in_fp32_and_int8_against_the_unpruned_fp32_model(tiny_model, tmp_path,
                                                                                         monkeypatch):
    monkeypatch.chdir(tmp_path)  # nothing may be left behind: the exports live in a scratch folder
    model, tokenizer = tiny_pruned(tiny_model)
    record = architecture_onnx_speedups(model, tokenizer, make_sentences(10, seed=2), TIMING, 32,
                                        Int8Settings(enabled=True, per_channel=True))
    assert list(tmp_path.iterdir()) == []
    assert set(record["speedup"]) == set(record["latency_ms"]) == {
        "onnx_batch_1", "onnx_batch_4", "onnx_int8_batch_1", "onnx_int8_batch_4"}
    assert all(value["median"] > 0 and value["repetitions"] == 3 for value in record["speedup"].values())
    assert record["int8"]["per_channel"] and set(record["int8"]["cpu_features"]) >= {"avx2", "vnni"}
    fp32_only = architecture_onnx_speedups(model, tokenizer, make_sentences(10, seed=2), TIMING, 32,
                                           Int8Settings(enabled=False, per_channel=False))
    assert set(fp32_only["speedup"]) == {"onnx_batch_1", "onnx_batch_4"} and "int8" not in fp32_only


def test_the_structured_report_takes_onnx_and_int8_speed_ups_per_architecture_for_deployed_strategies_only(
        tmp_path):
    def write(path, payload):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(payload))

    latency = {}
    for strategy, kind, torch_speedup in (("none", "none", 1.0), ("head_gradient", "head", 1.2),
                                          ("structured_gradient", "structured", 1.5)):
        write(tmp_path / "prune" / "sst2" / f"{strategy}-0.2" / "seed-1" / "heads.json",
              {"kind": kind, "removed_mac_fraction": 0.2})
        for pruning_seed, onnx_speedup in ((1, 1.6), (2, 1.8)):
            latency[f"{strategy}-0.2/seed-{pruning_seed}"] = {
                "speedup": {f"batch_{size}": {"median": torch_speedup} for size in (1, 32)},
                "onnx": {"speedup": {f"onnx{precision}_batch_{size}": {"median": onnx_speedup * scale}
                                     for size in (1, 32) for precision, scale in (("", 1), ("_int8", 2))}}}
        for seed in (42, 43):
            write(tmp_path / "cells" / "sst2" / f"{strategy}-0.2" / f"seed-{seed}.json",
                  {"runs": {str(pruning_seed): {"test": {"mcc": 0.5}} for pruning_seed in (1, 2)}, "machine": machine()})
            write(tmp_path / "deploy" / "sst2" / f"{strategy}-0.2" / f"seed-{seed}.json",
                  {str(pruning_seed): {"test": {"mcc": 0.4}, "int8": {"test": {"mcc": 0.3}}} for pruning_seed in (1, 2)})
    write(tmp_path / "latency" / "sst2.json", latency)
    rows = {(row["strategy"], row["precision"]): row for row in before_finetuning_rows(
        tmp_path, ["sst2"], ["none", "head_gradient", "structured_gradient"], ["structured_gradient"], [0.2], [42, 43])}
    fp32, int8 = rows[("structured_gradient", "fp32")], rows[("structured_gradient", "int8")]
    assert fp32["speedup_onnx_b32"] == pytest.approx(1.7)  # the mean over the pruned architectures
    assert fp32["speedup_torch_b32"] == pytest.approx(1.5) and fp32["mcc_mean"] == pytest.approx(0.5)  # the cells'
    assert int8["speedup_onnx_b32"] == pytest.approx(3.4) and int8["mcc_mean"] == pytest.approx(0.3)
    assert int8["speedup_torch_b32"] != int8["speedup_torch_b32"]  # NaN: INT8 runs in onnxruntime only
    assert rows[("head_gradient", "fp32")]["speedup_onnx_b32"] != rows[("head_gradient", "fp32")]["speedup_onnx_b32"]
    assert ("head_gradient", "int8") not in rows  # not deployed

