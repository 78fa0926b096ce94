"""FLOPs, MAC estimate, latency and quality metrics of the evaluate stage."""

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from conftest import make_sentences
from mcap import evaluate
from mcap.evaluate import (
    architecture_metrics,
    count_flops,
    encoder_macs,
    latency_ms,
    mac_estimate,
    paired_speedup,
    timed_shapes,
    zero_weight_flops,
)
from mcap.heads import eager_attention, head_layout, prune_heads
from mcap.modeling import unpruned_twin
from mcap.params import EvaluateSettings
from mcap.training import classification_metrics


def encoder_flops(model, seq_len):
    ids = torch.ones(1, seq_len, dtype=torch.long)
    with torch.no_grad(), eager_attention(model), FlopCounterMode(display=False) as counter:
        model(input_ids=ids)
    return sum(sum(ops.values()) for name, ops in counter.get_flop_counts().items() if name.endswith(".encoder"))


@pytest.mark.parametrize("removed", [{}, {0: [1, 2]}, {1: [0, 1, 2, 3]}])
def test_analytic_macs_match_the_flop_counter(tiny_model, removed):
    model, _ = tiny_model
    prune_heads(model, removed)
    macs = encoder_macs(model.config, head_layout(model), 12)
    assert 2 * (macs["attention"] + macs["feed_forward"]) == encoder_flops(model, 12)


def test_mac_estimate_is_the_ratio_of_encoder_work_at_the_timed_shapes(tiny_model):
    model, _ = tiny_model
    full = {length: encoder_flops(model, length) for length in (6, 16)}
    prune_heads(model, {0: [0, 1], 1: [3]})
    pruned = {length: encoder_flops(model, length) for length in (6, 16)}
    estimate = mac_estimate(model, [(4, 16), (2, 6), (4, 16)])  # (rows, padded length) of each timed batch
    expected = (8 * full[16] + 2 * full[6]) / (8 * pruned[16] + 2 * pruned[6])
    assert estimate["speedup"] == pytest.approx(expected)
    assert estimate["speedup"] != pytest.approx(mac_estimate(model, [(1, 128)])["speedup"])
    assert estimate["padded_length"] == pytest.approx(38 / 3)


def test_the_timed_shapes_are_those_of_the_batches_the_latency_loop_runs():
    batches = [{"input_ids": torch.zeros(rows, length)} for rows, length in ((4, 10), (4, 7), (1, 3))]
    assert timed_shapes(batches, warmup=2, repetitions=4) == [(1, 3), (4, 10), (4, 7), (1, 3)]


def test_head_removal_lowers_counted_flops_and_zero_weights_lower_nonzero_flops(tiny_model):
    model, _ = tiny_model
    dense = count_flops(model, 10)
    assert zero_weight_flops(model, 10) == 0
    with torch.no_grad():
        model.bert.encoder.layer[0].intermediate.dense.weight[:5] = 0  # 5 rows x 32 inputs
    assert zero_weight_flops(model, 10) == 2 * 10 * 5 * 32
    prune_heads(model, {0: [0]})
    assert count_flops(model, 10) < dense


def test_latency_statistics_come_from_the_requested_repetitions(tiny_model, tiny_batch):
    model, _ = tiny_model
    timing = latency_ms(model, [dict(tiny_batch)], warmup=2, repetitions=7)
    assert timing["repetitions"] == 7
    assert 0 < timing["q1"] <= timing["median"] <= timing["q3"]
    assert timing["iqr"] == pytest.approx(timing["q3"] - timing["q1"])


class ClockedModel(nn.Module):
    """Advances a fake clock by a fixed cost per forward pass and records the call order."""

    def __init__(self, name: str, cost_s: float, clock: list[float], calls: list[str]):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))
        self.name, self.cost_s, self.clock, self.calls = name, cost_s, clock, calls

    def forward(self, input_ids, attention_mask):
        self.clock[0] += self.cost_s
        self.calls.append(self.name)


def test_paired_speedup_interleaves_the_models_and_takes_per_repetition_ratios(monkeypatch, tiny_batch):
    clock, calls = [0.0], []
    monkeypatch.setattr(evaluate.time, "perf_counter", lambda: clock[0])
    pruned, unpruned = ClockedModel("pruned", 0.002, clock, calls), ClockedModel("unpruned", 0.006, clock, calls)
    latency, speedup = paired_speedup(pruned, unpruned, [dict(tiny_batch)], warmup=2, repetitions=5)
    assert calls == ["pruned", "unpruned", "unpruned", "pruned"] * 3 + ["pruned", "unpruned"]  # ABBA
    assert latency["median"] == pytest.approx(2.0) and latency["repetitions"] == 5
    assert speedup["median"] == pytest.approx(3.0) and speedup["iqr"] == pytest.approx(0.0)


def test_unpruned_twin_restores_every_head_of_a_pruned_model(tiny_model):
    model, _ = tiny_model
    prune_heads(model, {0: [0, 1], 1: [0, 1, 2, 3]})
    twin = unpruned_twin(model)
    assert head_layout(twin) == [[0, 1, 2, 3], [0, 1, 2, 3]]
    assert count_flops(twin, 10) > count_flops(model, 10)


def test_classification_metrics_on_known_logits():
    logits = np.array([[2.0, 0.0], [0.0, 2.0], [2.0, 0.0], [0.0, 2.0]], dtype=np.float32)
    labels = np.array([0, 1, 1, 1])
    metrics = classification_metrics(logits, labels)
    assert metrics["accuracy"] == 0.75
    assert metrics["mcc"] == pytest.approx(1 / np.sqrt(3))
    expected_loss = np.mean([np.log1p(np.exp(-2))] * 3 + [np.log1p(np.exp(2))])
    assert metrics["loss"] == pytest.approx(expected_loss, rel=1e-5)


def test_the_architecture_metrics_report_every_number(tiny_model):
    model, tokenizer = tiny_model
    settings = EvaluateSettings(threads=1, batch_sizes=[1, 4], warmup=1, repetitions=3, flops_seq_len=16)
    metrics = architecture_metrics(model, tokenizer, make_sentences(12, seed=9), settings, 32, reference=unpruned_twin(model))
    assert set(metrics["latency_ms"]) == set(metrics["speedup"]) == {"batch_1", "batch_4"}
    assert metrics["flops"]["length_16"]["dense"] == metrics["flops"]["length_16"]["nonzero"] > 0
    assert metrics["heads"] == 8
    assert {name: estimate["speedup"] for name, estimate in metrics["mac_estimate"].items()} == {"batch_1": 1.0, "batch_4": 1.0}


def test_the_evaluation_estimates_speed_up_at_the_padded_shapes_it_timed(tiny_model):
    model, tokenizer = tiny_model
    prune_heads(model, {0: [0, 1, 2]})
    test = make_sentences(12, seed=9)
    settings = EvaluateSettings(threads=1, batch_sizes=[4], warmup=1, repetitions=3, flops_seq_len=16)
    metrics = architecture_metrics(model, tokenizer, test, settings, 32, reference=unpruned_twin(model))
    batches = list(evaluate.batch_loader(tokenizer, evaluate.encode(tokenizer, test, 32), 4))
    assert metrics["mac_estimate"]["batch_4"] == mac_estimate(model, timed_shapes(batches, 1, 3))
    assert metrics["device_name"].startswith("CPU ")  # names the hardware in the report (tests run on CPU)
    cpu = metrics["machine"]["cpu"]  # what float32 results depend on: recorded with every evaluation
    if Path("/proc/cpuinfo").is_file():
        assert cpu["vendor"] and cpu["family"] and cpu["model"] and len(cpu["flags"].split()) > 10
