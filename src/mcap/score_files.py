"""Where the controller stages write the scores the learned strategies read, one JSON per strategy and task.

A module of its own, without torch or the controller, so that a stage reading or writing these files depends on
nothing else for it.
"""

from __future__ import annotations

from pathlib import Path


def learned_scores_path(strategy: str, task: str, transfer: bool = False) -> Path:
    """Where the scores of the learned ``strategy`` for ``task`` are: written by its controller stage for a task of
    ``tasks``, by the transfer_scores stage for a transfer task (which therefore retrains no controller)."""
    return Path("reports") / strategy / ("delta_transfer" if transfer else "delta") / f"{task}.json"


def budget_scores_path(strategy: str, task: str) -> Path:
    """Where the meta_controller_budgets stage writes ``task``'s scores from ``strategy``'s controllers, one trained
    at each budget of post_prune.mac_ratios."""
    return Path("reports") / strategy / "delta_by_budget" / f"{task}.json"
