"""Deployable models: a fine-tuned classifier exported to ONNX, checked against PyTorch on every test
sentence, and timed against the unpruned model in the same runtime.

:class:`DeployedModel` is shared by the ``post_prune`` stage (every budget of the sweep: each fine-tuned model
prunes to its own architecture, timed there), the ``deploy`` stage (:func:`deploy_finetuned`: the models that
``deploy.strategies`` pruned *before* fine-tuning, checked per fine-tuned model) and the latency stage
(:func:`architecture_onnx_speedups`: those models' architectures, timed once each). A speed-up is always against
the unpruned model exported and timed the same way, alternately on the same test batches
(:func:`mcap.evaluate.interleaved_times_ms`).
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import pandas as pd
import torch
from torch import nn

from mcap.errors import McapError
from mcap.evaluate import device_name, forward_pass, interleaved_times_ms, machine_record, speedup_of, torch_threads
from mcap.export import export_onnx, max_logit_difference, onnx_logits, onnx_session
from mcap.modeling import unpruned_twin
from mcap.params import EvaluateSettings, Int8Settings
from mcap.quantize import QuantizedModel, quantize_onnx
from mcap.training import batch_loader, classification_metrics, encode, predict_logits

ONNX_TOLERANCE = 1e-4  # max |ONNX − PyTorch| logit accepted on the test sentences
BATCH_SIZE = 32  # of the untimed passes: test metrics and the ONNX check


class DeployedModel:
    """A CPU model with its ONNX export at ``path``, checked on ``batches`` (labelled: it raises when the ONNX
    logits differ by ``ONNX_TOLERANCE`` or more on any sentence of them), and an onnxruntime session with
    ``threads`` threads."""

    def __init__(self, model: nn.Module, path: Path, batches: list[dict[str, torch.Tensor]], threads: int):
        self.model, self.path = model.eval(), path
        self.logits, self.labels = predict_logits(model, batches)
        export_onnx(model, batches[0], path)
        self.session = onnx_session(path, threads)
        self.onnx_difference = max_logit_difference(self.session, batches, self.logits)
        if not self.onnx_difference < ONNX_TOLERANCE:
            raise McapError(f"{path}: ONNX logits differ from PyTorch's by {self.onnx_difference:.2e} "
                            f"(accepted: < {ONNX_TOLERANCE:g}); the export is not faithful")

    @property
    def metrics(self) -> dict[str, float]:
        """PyTorch loss, accuracy and MCC on the checked batches."""
        return classification_metrics(self.logits, self.labels)

    def runs(self) -> dict[str, Callable[[dict[str, torch.Tensor]], object]]:
        """One timed forward pass per runtime."""
        return {"torch": forward_pass(self.model), "onnx": lambda batch: onnx_logits(self.session, batch)}


def timed_speedups(deployed: DeployedModel, reference: DeployedModel, timed: dict[int, list], timing: EvaluateSettings,
                   runtimes: tuple[str, ...] = ("torch", "onnx")) -> tuple[dict, dict]:
    """(latency, speed-up over ``reference``) per ``<runtime>_batch_<size>``, each pair timed alternately on the
    batches of ``timed`` (batch size -> batches)."""
    latency, speedup = {}, {}
    model_runs, reference_runs = deployed.runs(), reference.runs()
    for runtime in runtimes:
        pair_latency, pair_speedup = timed_pair(model_runs[runtime], reference_runs[runtime], runtime, timed, timing)
        latency |= pair_latency
        speedup |= pair_speedup
    return latency, speedup


def timed_pair(run: Callable, reference_run: Callable, name: str, timed: dict[int, list], timing: EvaluateSettings,
               ) -> tuple[dict, dict]:
    """(latency of ``run``, its speed-up over ``reference_run``) per ``<name>_batch_<size>``, the two timed
    alternately on the batches of ``timed``, torch at ``evaluate.threads``."""
    latency, speedup = {}, {}
    with torch_threads(timing.threads):
        for size, batches in timed.items():
            key = f"{name}_batch_{size}"
            latency[key], speedup[key] = speedup_of(interleaved_times_ms(
                (run, reference_run), batches, timing.warmup, timing.repetitions))
    return latency, speedup


def int8_quality(deployed: DeployedModel, batches: list, per_channel: bool, threads: int
                 ) -> tuple[QuantizedModel, dict]:
    """``deployed``'s ONNX model quantised to INT8 beside it (``<name>-int8.onnx``), and its record: how
    (:func:`quantize_onnx`), its test metrics and its agreement with the FP32 model on ``batches``."""
    path = deployed.path.with_name(f"{deployed.path.stem}-int8.onnx")
    how = quantize_onnx(deployed.path, path, per_channel)
    quantized = QuantizedModel(path, batches, deployed.logits, threads)
    return quantized, {**how, **quantized.record()}


def int8_record(deployed: DeployedModel, reference: DeployedModel, batches: list, timed: dict[int, list],
                timing: EvaluateSettings, per_channel: bool) -> dict:
    """:func:`int8_quality`, and the INT8 model's speed-up over ``reference``'s FP32 ONNX model (the unpruned one)
    in onnxruntime."""
    quantized, record = int8_quality(deployed, batches, per_channel, timing.threads)
    latency, speedup = timed_pair(quantized.run, reference.runs()["onnx"], "onnx_int8", timed, timing)
    return {**record, "latency_ms": latency, "speedup": speedup}


def test_batches(tokenizer, test: pd.DataFrame, max_seq_len: int, timed_sizes: Sequence[int] = ()
                 ) -> tuple[list, dict[int, list]]:
    """The test sentences as untimed batches (of ``BATCH_SIZE``) and as timed batches per size of ``timed_sizes``."""
    examples = encode(tokenizer, test, max_seq_len)
    return (list(batch_loader(tokenizer, examples, BATCH_SIZE)),
            {size: list(batch_loader(tokenizer, examples, size)) for size in timed_sizes})


def deploy_finetuned(model: nn.Module, tokenizer, test: pd.DataFrame, threads: int, max_seq_len: int,
                     onnx_path: Path, int8: Int8Settings) -> dict:
    """Export the fine-tuned ``model`` (CPU) to ``onnx_path`` and check it on every test sentence; with
    ``int8.enabled``, quantise it beside it and score that too (:func:`int8_quality`); return the metrics. Its speed
    is its architecture's, timed once by the latency stage (:func:`architecture_onnx_speedups`), not per
    fine-tuned model."""
    batches, _ = test_batches(tokenizer, test, max_seq_len)
    deployed = DeployedModel(model, onnx_path, batches, threads)
    quantized = {"int8": int8_quality(deployed, batches, int8.per_channel, threads)[1]} if int8.enabled else {}
    return {"test": deployed.metrics, "onnx_max_abs_diff": deployed.onnx_difference, **quantized,
            "device_name": device_name(torch.device("cpu")), "threads": threads, "precision": "fp32",
            "machine": machine_record(torch.device("cpu"))}


def architecture_onnx_speedups(model: nn.Module, tokenizer, test: pd.DataFrame, timing: EvaluateSettings,
                               max_seq_len: int, int8: Int8Settings) -> dict:
    """A pruned architecture (``model``, CPU, whatever its weights) timed in onnxruntime against its unpruned
    architecture's FP32 model (:func:`mcap.modeling.unpruned_twin`), interleaved on the test sentences; with
    ``int8.enabled``, its INT8 quantisation against the same FP32 reference. Time depends on shapes, not weights,
    so every model fine-tuned from this pruned one shares these numbers. Both exports live in a scratch folder and
    are checked on one batch: what is checked there is the exporter, not a model anyone deploys."""
    batches, timed = test_batches(tokenizer, test, max_seq_len, timing.batch_sizes)
    with tempfile.TemporaryDirectory() as scratch:
        pruned = DeployedModel(model, Path(scratch) / "pruned.onnx", batches[:1], timing.threads)
        reference = DeployedModel(unpruned_twin(model), Path(scratch) / "unpruned.onnx", batches[:1], timing.threads)
        latency, speedup = timed_speedups(pruned, reference, timed, timing, runtimes=("onnx",))
        record = {"latency_ms": latency, "speedup": speedup}
        if int8.enabled:
            quantized = int8_record(pruned, reference, batches[:1], timed, timing, int8.per_channel)
            record["latency_ms"] |= quantized["latency_ms"]
            record["speedup"] |= quantized["speedup"]
            record["int8"] = {key: quantized[key] for key in ("weights", "per_channel", "reduce_range", "cpu_features")}
    return record
