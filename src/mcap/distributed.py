"""Scaling fine-tuning out over several processes with ``accelerate launch`` (no home-made distribution).

A stage calls :func:`relaunch_under_accelerate` first: with ``train.num_processes`` > 1 it starts
``accelerate launch`` on the same script and arguments and returns True; the launched processes
find themselves inside a distributed run and go on down the ordinary code path, where
:func:`mcap.training.make_accelerator` picks up the process group (gloo on CPUs, NCCL on GPUs).
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys

import torch

from mcap.errors import McapError

log = logging.getLogger(__name__)


def inside_distributed_run() -> bool:
    """True in a process started by ``accelerate launch``/``torchrun`` with more than one process."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def leave_distributed_run() -> None:
    """Every process of a launched run calls this once its collective work is done, the main one before it goes on
    to write the outputs alone (what accelerate's ``end_training`` does: the process group is destroyed)."""
    if inside_distributed_run():
        from accelerate import PartialState

        PartialState().destroy_process_group()


def relaunch_under_accelerate(num_processes: int, batch_size: int) -> bool:
    """Run this script again under ``accelerate launch --num_processes N``; True if it did.

    Returns False (the caller trains in this process) for N = 1 or inside a launched process.
    Raises :class:`McapError` for a bad N or a failed launch.
    """
    if num_processes < 1:
        raise McapError(f"params.yaml: 'train.num_processes' must be a positive integer, got {num_processes}")
    if num_processes == 1 or inside_distributed_run():
        return False
    if torch.cuda.is_available() and num_processes > torch.cuda.device_count():
        raise McapError(f"params.yaml: 'train.num_processes' ({num_processes}) is more than the "
                        f"{torch.cuda.device_count()} GPU(s) this machine has: one process per GPU")
    if batch_size % num_processes:
        raise McapError(f"params.yaml: 'train.batch_size' ({batch_size}) must be a multiple of "
                        f"'train.num_processes' ({num_processes}): each process takes an equal share of a batch")
    command = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", str(num_processes),
               "--num_machines", "1", "--mixed_precision", "bf16" if torch.cuda.is_available() else "no",
               "--dynamo_backend", "no", *sys.argv]
    log.info("relaunching on %d processes: %s", num_processes, " ".join(command))
    if subprocess.run(command, check=False).returncode != 0:
        raise McapError(f"accelerate launch with {num_processes} processes failed (its output is above)")
    return True
