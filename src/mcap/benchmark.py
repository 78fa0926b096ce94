"""Quality, latency, FLOPs and the physical bound of a (pruned) fine-tuned classifier.

* quality: test MCC, accuracy and cross-entropy loss;
* latency: forward passes on real test sentences, after warm-up, with a fixed thread count,
  no attention outputs, CUDA synchronised; median and inter-quartile range in ms;
* FLOPs: ``torch.utils.flop_counter.FlopCounterMode`` on one sequence, dense and counting only
  non-zero encoder weights (what unstructured sparsity could save in theory);
* bound: the speed-up that removing heads can give at most if time followed MACs:
  ``1 / (1 - attention share of encoder MACs x fraction of heads removed)``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from mcap.heads import eager_attention, head_layout
from mcap.modeling import count_parameters, encoder_linears
from mcap.training import classification_metrics, make_loader, predict_logits


@dataclass(frozen=True)
class BenchmarkSettings:
    batch_sizes: Sequence[int]
    warmup: int
    repetitions: int
    flops_seq_len: int
    max_seq_len: int


def count_flops(model: nn.Module, seq_len: int) -> int:
    """FLOPs of one forward pass on one sequence of ``seq_len`` tokens.

    Counted with the eager attention kernel so that the attention matmuls are visible to the
    counter whatever fused kernel the model would otherwise use.
    """
    device = next(model.parameters()).device
    input_ids = torch.full((1, seq_len), 1000 % model.config.vocab_size, dtype=torch.long, device=device)
    with torch.inference_mode(), eager_attention(model), FlopCounterMode(display=False) as counter:
        model(input_ids=input_ids, attention_mask=torch.ones_like(input_ids))
    return int(counter.get_total_flops())


def count_zero_weights(model: nn.Module) -> int:
    """Encoder Linear weights that are exactly zero (what unstructured pruning leaves)."""
    return sum(int((linear.weight == 0).sum()) for _name, linear in encoder_linears(model))


def zero_weight_flops(model: nn.Module, seq_len: int) -> int:
    """FLOPs that multiply by exactly-zero encoder weights (2 per zero weight per token)."""
    return 2 * seq_len * count_zero_weights(model)


def encoder_macs(config, kept_heads: Sequence[Sequence[int]], seq_len: int) -> dict[str, int]:
    """Multiply-accumulates of the encoder on one sequence, split into attention and feed-forward.

    Per layer with a = kept heads x d_h: Q/K/V projections 3·L·d·a, scores L·L·a, context L·L·a,
    output projection L·a·d; feed-forward 2·L·d·I.
    """
    d, length = config.hidden_size, seq_len
    d_h = d // config.num_attention_heads
    attention = sum(len(heads) * d_h * (4 * length * d + 2 * length * length) for heads in kept_heads)
    feed_forward = len(kept_heads) * 2 * length * d * config.intermediate_size
    return {"attention": attention, "feed_forward": feed_forward}


def mac_bound(model: nn.Module, seq_len: int) -> dict[str, float]:
    """Attention share of the unpruned encoder's MACs, fraction of heads removed, bound on speed-up."""
    config = model.config
    full = encoder_macs(config, [range(config.num_attention_heads)] * config.num_hidden_layers, seq_len)
    share = full["attention"] / (full["attention"] + full["feed_forward"])
    kept = sum(len(heads) for heads in head_layout(model))
    removed = 1 - kept / (config.num_attention_heads * config.num_hidden_layers)
    return {"attention_mac_share": share, "heads_removed_fraction": removed, "mac_bound_speedup": 1 / (1 - share * removed)}


def latency_ms(model: nn.Module, batches: Sequence[dict[str, torch.Tensor]], warmup: int, repetitions: int) -> dict[str, float]:
    """Median and quartiles of forward-pass wall time; repetition i runs batch i mod len(batches)."""
    device = next(model.parameters()).device
    synchronize = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    times = []
    with torch.inference_mode():
        for index in range(warmup + repetitions):
            batch = batches[index % len(batches)]
            synchronize()
            start = time.perf_counter()
            model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
            synchronize()
            if index >= warmup:
                times.append((time.perf_counter() - start) * 1000)
    q1, median, q3 = np.percentile(times, [25, 50, 75])
    return {"median": float(median), "q1": float(q1), "q3": float(q3), "iqr": float(q3 - q1), "repetitions": repetitions}


def benchmark_model(model: nn.Module, tokenizer, test: pd.DataFrame, settings: BenchmarkSettings) -> dict:
    """All benchmark numbers of one model as a metrics dictionary."""
    device = next(model.parameters()).device
    model.eval()
    test_loader = make_loader(tokenizer, test, 64, settings.max_seq_len)
    metrics = {"test": classification_metrics(*predict_logits(model, test_loader))}

    lengths = [len(ids) for ids in tokenizer(list(test["sentence"]), truncation=True, max_length=settings.max_seq_len)["input_ids"]]
    mean_length = max(1, round(float(np.mean(lengths))))
    metrics["latency_ms"] = {}
    for batch_size in settings.batch_sizes:
        batches = [{k: v.to(device) for k, v in batch.items()} for batch in make_loader(tokenizer, test, batch_size, settings.max_seq_len)]
        metrics["latency_ms"][f"batch_{batch_size}"] = latency_ms(model, batches, settings.warmup, settings.repetitions)

    metrics["flops"] = {}
    for name, seq_len in (("mean_length", mean_length), (f"length_{settings.flops_seq_len}", settings.flops_seq_len)):
        dense = count_flops(model, seq_len)
        metrics["flops"][name] = {"seq_len": seq_len, "dense": dense, "nonzero": dense - zero_weight_flops(model, seq_len)}

    metrics["parameters"] = count_parameters(model)
    metrics["nonzero_parameters"] = metrics["parameters"] - count_zero_weights(model)
    metrics["heads"] = sum(len(heads) for heads in head_layout(model))
    metrics.update(mac_bound(model, mean_length))
    metrics["device"] = device.type
    metrics["threads"] = torch.get_num_threads()
    return metrics
