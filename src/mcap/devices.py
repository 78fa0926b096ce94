"""Where work runs and in what precision: the GPU when there is one, in bf16 autocast there; the CPU in fp32."""

from __future__ import annotations

from contextlib import nullcontext

import torch


def pick_device() -> torch.device:
    """Where a model runs outside training (which accelerate places): the GPU when there is one."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def autocast(device: torch.device):
    """The one precision rule: bf16 autocast on CUDA (fine-tuning trains in it, so test quality, latency and
    explanations are measured in it too); plain fp32 elsewhere (bf16 on these CPUs is slower and changes results)."""
    return torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else nullcontext()


def precision(device: torch.device) -> str:
    """The name of what :func:`autocast` computes in on ``device``, recorded beside every measurement."""
    return "bf16-autocast" if device.type == "cuda" else "fp32"
