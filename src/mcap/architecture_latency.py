"""The speed of the models the post_prune stages made, timed once per pruned architecture, all on one machine.

A post_prune budget's model and its INT8 quantisation time as any model of its shapes does: forward time depends on
the heads and FFN neurons each layer kept, not on the weights' values, the fine-tuning seed or the Fisher sample.
So the post_prune stages record each model's layout (``kept_heads``, ``intermediate_sizes``) and this module times
a randomly initialised model of that layout against the unpruned architecture, as the latency stage times the
models pruned before fine-tuning (:func:`mcap.evaluate.architecture_metrics` in PyTorch,
:func:`mcap.deploy.architecture_onnx_speedups` in onnxruntime, FP32 and INT8). Two budgets that left the same
layout are timed once, and a grid run in chunks on several machines is timed on the last one: speed-ups are never
pooled across CPUs.
"""

from __future__ import annotations

from collections.abc import Iterable

import pandas as pd
from torch import nn

from mcap.deploy import architecture_onnx_speedups
from mcap.evaluate import architecture_metrics
from mcap.ffn import apply_ffn_layout, ffn_layout
from mcap.heads import apply_head_layout, head_layout
from mcap.modeling import unpruned_twin
from mcap.params import EvaluateSettings, Int8Settings
from mcap.post_prune_files import layout_key


def post_prune_layouts(results: Iterable[dict]) -> dict[str, tuple[list[list[int]], list[int]]]:
    """Every distinct layout of the post_prune ``results`` (their budgets'), by :func:`layout_key`."""
    layouts = {}
    for result in results:
        for budget in result["budgets"]:
            layout = budget["kept_heads"], budget["intermediate_sizes"]
            layouts.setdefault(layout_key(*layout), layout)
    return layouts


def layout_twin(unpruned: nn.Module, kept_heads: list[list[int]], intermediate_sizes: list[int]) -> nn.Module:
    """A randomly initialised model of ``unpruned``'s architecture shrunk to the layout (for timing only)."""
    twin = unpruned_twin(unpruned)
    apply_head_layout(twin, kept_heads)
    apply_ffn_layout(twin, intermediate_sizes)
    return twin.eval()


def time_layouts(unpruned: nn.Module, tokenizer, layouts: dict[str, tuple[list[list[int]], list[int]]],
                 test: pd.DataFrame, timing: EvaluateSettings, max_seq_len: int, int8: Int8Settings) -> dict[str, dict]:
    """Each layout (and the unpruned one, whose INT8 model is a row of its own) timed against the unpruned
    architecture on the ``test`` sentences: PyTorch (``speedup``, :func:`mcap.evaluate.architecture_metrics`) and
    onnxruntime in FP32 and INT8 (``onnx``), with the machine; by :func:`layout_key`."""
    unpruned_layout = head_layout(unpruned), ffn_layout(unpruned)  # every head and FFN neuron
    everything = {layout_key(*unpruned_layout): unpruned_layout, **layouts}
    records = {}
    for key, layout in everything.items():
        model = layout_twin(unpruned, *layout)
        records[key] = {**architecture_metrics(model, tokenizer, test, timing, max_seq_len,
                                               reference=unpruned_twin(model)),
                        "onnx": architecture_onnx_speedups(model, tokenizer, test, timing, max_seq_len, int8)}
    return records
