"""MCAP: meta-controller-based attention-head pruning of BERT, with baselines, evaluation and explanations."""

__version__ = "0.1.0"
