"""Pruning strategies, one module each, registered by name.

Every module in this package is imported here, so a new strategy is one new file (a class with
``@register``) plus its name in ``prune.strategies`` of params.yaml.
"""

import importlib
import pkgutil

from mcap.strategies.base import PruneContext, PruneOutcome, Strategy, get_strategy, known_strategies

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["PruneContext", "PruneOutcome", "Strategy", "get_strategy", "known_strategies"]
