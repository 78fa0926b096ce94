"""INT8 deployment: an exported ONNX classifier quantised by onnxruntime's dynamic quantisation (no kernels of ours).

Weights become signed 8-bit (``QInt8``), per tensor or per output channel; activations are quantised at run time.
On x86 CPUs without VNNI the u8×s8 products go through 16-bit intermediates that saturate, which costs accuracy
(onnxruntime #5849): there the weights are quantised to 7 bits (``reduce_range``), as onnxruntime's documentation
advises. Which CPU features were found is recorded with every quantised model, since speed and accuracy depend on
them; speed-ups are never pooled across CPU kinds.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from mcap.evaluate import cpu_info
from mcap.export import onnx_batches_logits, onnx_logits, onnx_session
from mcap.training import classification_metrics

INT8_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8")  # what onnxruntime's int8 kernels use


def int8_features() -> dict[str, bool]:
    """Which of :data:`INT8_FLAGS` this CPU reports (/proc/cpuinfo), and whether it has VNNI at all."""
    flags = set(cpu_info().get("flags", "").split())
    found = {flag: flag in flags for flag in INT8_FLAGS}
    return {**found, "vnni": found["avx512_vnni"] or found["avx_vnni"]}


def quantize_onnx(fp32: Path, int8: Path, per_channel: bool, reduce_range: bool | None = None) -> dict:
    """Write ``fp32``'s dynamic INT8 quantisation to ``int8``; ``reduce_range`` None: on where the CPU lacks VNNI.
    Returns how it was quantised, with the CPU features it was decided on."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    features = int8_features()
    reduce_range = not features["vnni"] if reduce_range is None else reduce_range
    int8.parent.mkdir(parents=True, exist_ok=True)
    quantize_dynamic(fp32, int8, per_channel=per_channel, reduce_range=reduce_range, weight_type=QuantType.QInt8)
    return {"weights": "QInt8", "per_channel": per_channel, "reduce_range": reduce_range, "cpu_features": features}


class QuantizedModel:
    """An INT8 ONNX model beside the FP32 model it was quantised from: its test metrics, how often its prediction
    agrees with the FP32 one, and its largest logit difference, on the same batches."""

    def __init__(self, path: Path, batches: list[dict[str, torch.Tensor]], fp32_logits: np.ndarray, threads: int):
        self.session = onnx_session(path, threads)
        self.logits = onnx_batches_logits(self.session, batches)
        labels = np.concatenate([batch["labels"].numpy() for batch in batches])
        self.metrics = classification_metrics(self.logits, labels)
        self.agreement = float((self.logits.argmax(1) == fp32_logits.argmax(1)).mean())
        self.max_logit_difference = float(np.abs(self.logits - fp32_logits).max())

    def run(self, batch: dict[str, torch.Tensor]) -> np.ndarray:
        """One timed forward pass."""
        return onnx_logits(self.session, batch)

    def record(self) -> dict:
        return {"test": self.metrics, "agreement_with_fp32": self.agreement,
                "max_abs_logit_difference": self.max_logit_difference}
