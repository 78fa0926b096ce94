"""MCAP: meta-controller-based attention-head pruning of BERT, with baselines, evaluation and explanations."""

import os

# Deterministic cuBLAS (torch.use_deterministic_algorithms in mcap.seeding) needs this before CUDA starts; every stage
# imports mcap first, so this is the one place. No effect on the CPU.
os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")

__version__ = "0.1.0"
