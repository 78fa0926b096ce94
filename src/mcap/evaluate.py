"""Latency, FLOPs and the MAC-proportional speed-up estimate of a (pruned) classifier's architecture.

They depend on the architecture (the heads and FFN neurons kept, the zeros of unstructured pruning), not on the
weights' values or the seeds that fine-tuned them, so the latency stage measures each pruned model once.

* latency: forward passes on real test sentences, after warm-up, with a fixed thread count,
  no attention outputs, CUDA synchronised, in the precision of test quality (bf16 autocast on CUDA,
  fp32 on the CPU); median and inter-quartile range in ms;
* speed-up: the model and its unpruned twin timed alternately in one process, so that a slower
  or busier moment of the machine hits both alike; median and quartiles of the per-repetition
  ratio. (Latencies measured in different processes drift by up to ±30% on a shared VM.)
* FLOPs: ``torch.utils.flop_counter.FlopCounterMode`` on one sequence, dense and counting only
  non-zero encoder weights (what unstructured sparsity could save in theory);
* MAC estimate: the speed-up if forward time were proportional to encoder multiply-accumulates,
  counted at the padded shapes of the batches that were timed (per batch size). It is an estimate,
  not a bound: softmax, scaling and masking also shrink with the heads and are not MACs, so a
  measured speed-up may exceed it.
"""

from __future__ import annotations

import platform
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from mcap.devices import autocast, precision
from mcap.ffn import count_neurons, ffn_layout
from mcap.heads import eager_attention, head_layout
from mcap.modeling import count_parameters, encoder_linears, unpruned_layers
from mcap.params import EvaluateSettings
from mcap.training import batch_loader, encode


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


def encoder_macs(config, kept_heads: Sequence[Sequence[int]], seq_len: int,
                 ffn_widths: Sequence[int] | None = None) -> dict[str, int]:
    """Multiply-accumulates of the encoder on one sequence, split into attention and feed-forward.

    Per layer with a = kept heads x d_h and I_l FFN neurons (``ffn_widths``; ``config.intermediate_size``
    in every layer when None): Q/K/V projections 3·L·d·a, scores L·L·a, context L·L·a, output
    projection L·a·d; feed-forward 2·L·d·I_l.
    """
    d, length = config.hidden_size, seq_len
    d_h = d // config.num_attention_heads
    widths = [config.intermediate_size] * len(kept_heads) if ffn_widths is None else ffn_widths
    attention = sum(len(heads) * d_h * (4 * length * d + 2 * length * length) for heads in kept_heads)
    feed_forward = sum(2 * length * d * width for width in widths)
    return {"attention": attention, "feed_forward": feed_forward}


def timed_shapes(batches: Sequence[dict[str, torch.Tensor]], warmup: int, repetitions: int) -> list[tuple[int, int]]:
    """(rows, padded length) of each batch :func:`paired_latency_ms` times, in order (it cycles through ``batches``)."""
    return [tuple(batches[index % len(batches)]["input_ids"].shape) for index in range(warmup, warmup + repetitions)]


def mac_estimate(model: nn.Module, shapes: Sequence[tuple[int, int]]) -> dict[str, float]:
    """Speed-up over the unpruned architecture if time were proportional to encoder MACs, summed over the
    timed ``shapes`` (rows, padded length); with the attention share of the unpruned MACs and the mean length."""
    config = model.config
    full_layout = [range(config.num_attention_heads)] * unpruned_layers(config)

    def total(layout, widths=None, part=None) -> int:
        return sum(rows * (macs[part] if part else sum(macs.values()))
                   for rows, length in shapes for macs in [encoder_macs(config, layout, length, widths)])

    full = total(full_layout)
    return {"padded_length": float(np.mean([length for _rows, length in shapes])),
            "attention_mac_share": total(full_layout, part="attention") / full,
            "speedup": full / total(head_layout(model), ffn_layout(model))}


def forward_pass(model: nn.Module) -> Callable[[dict[str, torch.Tensor]], object]:
    """One timed run of a PyTorch model: the forward pass on a batch, without attention outputs, in the precision
    test quality is measured in (:func:`mcap.devices.autocast`)."""
    device = next(model.parameters()).device

    def run(batch: dict[str, torch.Tensor]):
        with autocast(device):
            return model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])

    return run


def interleaved_times_ms(runs: Sequence[Callable[[dict[str, torch.Tensor]], object]],
                         batches: Sequence[dict[str, torch.Tensor]], warmup: int, repetitions: int,
                         synchronize: Callable[[], None] = lambda: None) -> list[np.ndarray]:
    """Wall times (ms) of each run, interleaved: repetition i runs every one in turn on batch i mod
    len(batches), in reverse order on odd repetitions (ABBA), because the second pass on a batch finds it
    in cache. ``runs`` may be PyTorch forward passes or another runtime's. One array of ``repetitions``
    times per run."""
    times = np.zeros((len(runs), repetitions))
    with torch.inference_mode():
        for index in range(warmup + repetitions):
            batch = batches[index % len(batches)]
            order = list(enumerate(runs))
            for position, run in order if index % 2 == 0 else order[::-1]:
                synchronize()
                start = time.perf_counter()
                run(batch)
                synchronize()
                if index >= warmup:
                    times[position, index - warmup] = (time.perf_counter() - start) * 1000
    return list(times)


def paired_latency_ms(models: Sequence[nn.Module], batches: Sequence[dict[str, torch.Tensor]], warmup: int,
                      repetitions: int) -> list[np.ndarray]:
    """:func:`interleaved_times_ms` of the models' forward passes, CUDA synchronised on a GPU."""
    device = next(models[0].parameters()).device
    synchronize = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    return interleaved_times_ms([forward_pass(model) for model in models], batches, warmup, repetitions, synchronize)


@contextmanager
def torch_threads(count: int) -> Iterator[None]:
    """torch's intra-op thread count fixed at ``count`` within: timing runs at ``evaluate.threads``, while the work
    around it (a Fisher pass, say) keeps every core."""
    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def spread(values: np.ndarray) -> dict[str, float]:
    """Median and quartiles of repeated measurements."""
    q1, median, q3 = np.percentile(values, [25, 50, 75])
    return {"median": float(median), "q1": float(q1), "q3": float(q3), "iqr": float(q3 - q1), "repetitions": len(values)}


def latency_ms(model: nn.Module, batches: Sequence[dict[str, torch.Tensor]], warmup: int, repetitions: int) -> dict[str, float]:
    """Median and quartiles of one model's forward-pass wall time."""
    return spread(paired_latency_ms([model], batches, warmup, repetitions)[0])


def paired_speedup(model: nn.Module, reference: nn.Module, batches: Sequence[dict[str, torch.Tensor]], warmup: int,
                   repetitions: int) -> tuple[dict[str, float], dict[str, float]]:
    """(latency of ``model``, speed-up over ``reference`` = per-repetition time ratio), timed interleaved."""
    return speedup_of(paired_latency_ms([model, reference], batches, warmup, repetitions))


def speedup_of(times: Sequence[np.ndarray]) -> tuple[dict[str, float], dict[str, float]]:
    """(latency spread of the first run, spread of its per-repetition speed-up over the second) from
    :func:`interleaved_times_ms`."""
    model_times, reference_times = times
    return spread(model_times), spread(reference_times / model_times)


def architecture_metrics(model: nn.Module, tokenizer, test: pd.DataFrame, settings: EvaluateSettings, max_seq_len: int,
                         reference: nn.Module | None = None) -> dict:
    """Every number the latency stage measures on one model's architecture, timed on the test sentences.

    With ``reference`` (the unpruned architecture) the latency is measured interleaved with it and
    the speed-up over it is reported as well.
    """
    device = next(model.parameters()).device
    model.eval()
    examples = encode(tokenizer, test, max_seq_len)
    metrics = {}

    mean_length = max(1, round(float(np.mean([len(example["input_ids"]) for example in examples]))))
    metrics["latency_ms"], metrics["speedup"], metrics["mac_estimate"] = {}, {}, {}
    for batch_size in settings.batch_sizes:
        batches = [{k: v.to(device) for k, v in batch.items()} for batch in batch_loader(tokenizer, examples, batch_size)]
        name = f"batch_{batch_size}"
        metrics["mac_estimate"][name] = mac_estimate(model, timed_shapes(batches, settings.warmup, settings.repetitions))
        if reference is None:
            metrics["latency_ms"][name] = latency_ms(model, batches, settings.warmup, settings.repetitions)
        else:
            metrics["latency_ms"][name], metrics["speedup"][name] = paired_speedup(
                model, reference, batches, settings.warmup, settings.repetitions)

    metrics["flops"] = {}
    for name, seq_len in (("mean_length", mean_length), (f"length_{settings.flops_seq_len}", settings.flops_seq_len)):
        dense = count_flops(model, seq_len)
        metrics["flops"][name] = {"seq_len": seq_len, "dense": dense, "nonzero": dense - zero_weight_flops(model, seq_len)}

    metrics["parameters"] = count_parameters(model)
    metrics["nonzero_parameters"] = metrics["parameters"] - count_zero_weights(model)
    metrics["heads"] = sum(len(heads) for heads in head_layout(model))
    metrics["ffn_neurons"] = count_neurons(model)
    metrics["device"] = device.type
    metrics["precision"] = precision(device)
    metrics["device_name"] = device_name(device)
    metrics["threads"] = torch.get_num_threads()
    metrics["machine"] = machine_record(device)
    return metrics


def cpu_info() -> dict[str, str]:
    """The first processor's fields of /proc/cpuinfo (Linux; empty elsewhere)."""
    cpuinfo = Path("/proc/cpuinfo")
    fields: dict[str, str] = {}
    for line in cpuinfo.read_text().splitlines() if cpuinfo.is_file() else []:
        if not line.strip():
            break  # the end of the first processor's block
        key, _, value = line.partition(":")
        fields[key.strip()] = value.strip()
    return fields


def device_name(device: torch.device) -> str:
    """The GPU's name, or the CPU model from /proc/cpuinfo (Linux), for the report's setup line."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU {cpu_info().get('model name', platform.machine())}"


def machine_record(device: torch.device) -> dict:
    """What a run's float32 results depend on beyond the code and params: the CPU's vendor, family, model and
    instruction-set flags (two machines that both say "AMD EPYC" can differ in the last digits), the GPU if one ran
    it, and the torch build. Stored with every evaluation, so that reruns are compared per machine."""
    cpu = cpu_info()
    return {"cpu": {key: cpu.get(name) for key, name in (("vendor", "vendor_id"), ("family", "cpu family"),
                                                         ("model", "model"), ("model_name", "model name"),
                                                         ("stepping", "stepping"), ("flags", "flags"))},
            "architecture": platform.machine(), "device": device_name(device), "torch": torch.__version__}
