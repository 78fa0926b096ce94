"""Where the controller stages write the scores the learned strategies read, one JSON per strategy and task.

A module of its own, without torch or the controller, so that a stage reading or writing these files depends on
nothing else for it.
"""

from __future__ import annotations

from pathlib import Path

CONTROLLER_REPORTS = Path("reports/controllers")  # <strategy>/<ratio>/: each controller stage's scores and diagnostics


def learned_scores_path(strategy: str, ratio: float, task: str) -> Path:
    """Where the controller stage of the learned ``strategy`` at ``ratio`` writes its scores for ``task``, one of
    mcap.train_tasks (a transfer task's are inferred by the prune stage, so a new one retrains no controller)."""
    return CONTROLLER_REPORTS / strategy / str(ratio) / "delta" / f"{task}.json"


def budget_scores_path(strategy: str, task: str) -> Path:
    """Where the meta_controller_budgets stage writes ``task``'s scores from ``strategy``'s controllers, one trained
    at each budget of post_prune.mac_ratios."""
    return Path("reports") / strategy / "delta_by_budget" / f"{task}.json"
