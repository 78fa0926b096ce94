"""Deployable models: ONNX export of a (head- and FFN-) pruned classifier, checked against PyTorch, run by onnxruntime.

The graph takes ``input_ids`` and ``attention_mask`` (B, L) with both axes dynamic and returns the
``logits`` (B, 2). It is exported by torch's dynamo-based exporter, which traces the model as it
is: layers with fewer heads, a layer without heads and FFNs of any width (zero included) export
like any other, with no runtime of our own.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from mcap.errors import McapError

INPUTS = ("input_ids", "attention_mask")


class _Logits(nn.Module):
    """The classifier as a function of the two inputs, returning the logits alone (what the ONNX graph outputs)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=input_ids, attention_mask=attention_mask).logits  # (B, 2)


def export_onnx(model: nn.Module, example: dict[str, torch.Tensor], path: Path) -> None:
    """Write ``model`` (on the CPU, in eval mode) to ``path`` as ONNX, traced on ``example`` (a tokenised batch).

    The example needs at least 2 rows and 2 tokens: an axis of size 1 would be fixed in the graph.
    """
    rows, length = example["input_ids"].shape
    if rows < 2 or length < 2:
        raise McapError(f"ONNX export needs an example batch of at least 2 x 2 tokens, got {rows} x {length}")
    batch, sequence = torch.export.Dim("batch"), torch.export.Dim("sequence")
    path.parent.mkdir(parents=True, exist_ok=True)
    program = torch.onnx.export(
        _Logits(model.eval().cpu()), tuple(example[name].cpu() for name in INPUTS), dynamo=True, verbose=False,
        input_names=list(INPUTS), output_names=["logits"],
        dynamic_shapes={name: {0: batch, 1: sequence} for name in INPUTS},
    )
    program.save(str(path))


def onnx_session(path: Path, threads: int):
    """An onnxruntime session on the CPU with ``threads`` intra-op threads (the thread count PyTorch is timed with)."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def onnx_logits(session, batch: dict[str, torch.Tensor]) -> np.ndarray:
    """(B, 2) logits of one tokenised batch."""
    return session.run(["logits"], {name: batch[name].cpu().numpy() for name in INPUTS})[0]


def onnx_batches_logits(session, batches: Sequence[dict[str, torch.Tensor]]) -> np.ndarray:
    """(N, 2) logits of every sentence of ``batches``, in order."""
    return np.concatenate([onnx_logits(session, batch) for batch in batches])


def max_logit_difference(session, batches: Sequence[dict[str, torch.Tensor]], expected: np.ndarray) -> float:
    """Max |ONNX − PyTorch| over every logit of ``batches``, given PyTorch's logits ``expected`` (N, 2) of
    those batches in order: the export check (it should be < 1e-4)."""
    logits = onnx_batches_logits(session, batches)
    if logits.shape != expected.shape:
        raise McapError(f"ONNX gave logits of shape {logits.shape} for PyTorch's {expected.shape}")
    return float(np.abs(logits - expected).max())
