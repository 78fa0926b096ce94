"""Pruning strategies, one module each, found by name.

A strategy is one module here named after it (a class with ``@register``), plus its name in
``prune.strategies`` of params.yaml. Modules are imported on first use, so a stage runs (and
depends on) only the strategy modules it uses.
"""

from mcap.strategies.base import PruneContext, PruneOutcome, Strategy, get_strategy, known_strategies, pruning_seeds

__all__ = ["PruneContext", "PruneOutcome", "Strategy", "get_strategy", "known_strategies", "pruning_seeds"]
