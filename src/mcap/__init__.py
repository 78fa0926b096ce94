"""MCAP: meta-controller-based attention-head pruning of BERT, with baselines, benchmarks and explanations."""

__version__ = "0.1.0"
