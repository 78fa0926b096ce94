"""Paired comparison of pruning strategies over a grid of cells, with bootstrap intervals.

A cell is one fine-tuned model: (task, strategy, ratio, pruning_seed, finetune_seed) with its test metrics. Two
strategies are compared at matched fine-tuning seeds (same task head, batch order and test sentences: see
:func:`mcap.training.finetune_grid`), so the fine-tuning seed's luck cancels in their difference.

The statistic, for a strategy A against a reference B at one (task, ratio): with F the fine-tuning seeds both ran
and P_A, P_B the pruning seeds each ran,

    delta = mean over f in F of [ mean over p in P_A of A(p, f)  -  mean over q in P_B of B(q, f) ]

Its 95% interval is a percentile bootstrap over both random factors, as the design crosses them: each replicate
draws F with replacement (the pairs), and, independently per strategy, draws that strategy's pruning seeds with
replacement, the same draw for every fine-tuning seed (a pruning seed is one pruned model, shared by the
fine-tuning seeds). A strategy with one pruning seed (one that draws nothing, or was run at one) adds no pruning
variance. With few seeds a percentile interval is narrower than the truth; the seeds it rests on are in
``n_pairs`` and in the cells. One shared fine-tuning seed gives no interval (NaN): one pair says nothing of the
fine-tuning seed's luck.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

CELL_KEYS = ["task", "strategy", "ratio", "pruning_seed", "finetune_seed"]
PAIRED_COLUMNS = ["task", "ratio", "strategy", "reference", "n_pairs", "mean_delta", "ci_low", "ci_high"]
REFERENCES = ("head_gradient", "head_random")
BOOTSTRAP_REPLICATES = 10_000
CONFIDENCE = 0.95


def seed_table(cells: pd.DataFrame, metric: str) -> pd.DataFrame:
    """One strategy's cells at one (task, ratio) as a table: rows pruning seeds, columns fine-tuning seeds."""
    return cells.pivot(index="pruning_seed", columns="finetune_seed", values=metric).sort_index().sort_index(axis=1)


def paired_difference(strategy: pd.DataFrame, reference: pd.DataFrame, seed: int,
                      replicates: int = BOOTSTRAP_REPLICATES) -> dict[str, float]:
    """Mean paired difference of two seed tables (:func:`seed_table`) over their shared fine-tuning seeds, with its
    percentile bootstrap interval (the module's docstring says what is resampled)."""
    shared = strategy.columns.intersection(reference.columns)
    if shared.empty:
        raise ValueError("the two strategies share no fine-tuning seed: there is nothing to pair")
    a = strategy[shared].to_numpy(dtype=float)   # (pruning seeds of A, F)
    b = reference[shared].to_numpy(dtype=float)  # (pruning seeds of B, F)
    if np.isnan(a).any() or np.isnan(b).any():
        raise ValueError("a strategy lacks a cell at some (pruning seed, fine-tuning seed): the grid is incomplete")
    rng = np.random.default_rng(seed)
    f_draw = rng.integers(0, len(shared), size=(replicates, len(shared)))  # (R, F)
    a_draw = rng.integers(0, a.shape[0], size=(replicates, a.shape[0]))    # (R, P_A)
    b_draw = rng.integers(0, b.shape[0], size=(replicates, b.shape[0]))    # (R, P_B)
    a_means = a[a_draw].mean(axis=1)  # (R, F): each replicate's pruning-seed mean per fine-tuning seed
    b_means = b[b_draw].mean(axis=1)
    per_seed = np.take_along_axis(a_means - b_means, f_draw, axis=1)  # (R, F) resampled pairs
    replicated = per_seed.mean(axis=1)
    tail = (1 - CONFIDENCE) / 2
    low, high = np.quantile(replicated, [tail, 1 - tail]) if len(shared) > 1 else (np.nan, np.nan)
    return {"n_pairs": len(shared), "mean_delta": float((a.mean(axis=0) - b.mean(axis=0)).mean()),
            "ci_low": float(low), "ci_high": float(high)}


def paired_table(cells: pd.DataFrame, metric: str = "mcc", references: tuple[str, ...] = REFERENCES,
                 seed: int = 0) -> pd.DataFrame:
    """Every strategy against each reference it shares a (task, ratio) with: :data:`PAIRED_COLUMNS`, one row each."""
    duplicated = cells.duplicated(CELL_KEYS)
    if duplicated.any():
        raise ValueError(f"cells repeat a key ({', '.join(CELL_KEYS)}): {cells[duplicated].iloc[0].to_dict()}")
    rows = []
    for (task, ratio), group in cells.groupby(["task", "ratio"], sort=True):
        tables = {name: seed_table(runs, metric) for name, runs in group.groupby("strategy", sort=True)}
        for reference in references:
            if reference not in tables:
                continue
            for strategy, table in tables.items():
                if strategy != reference:
                    rows.append({"task": task, "ratio": ratio, "strategy": strategy, "reference": reference,
                                 **paired_difference(table, tables[reference], seed)})
    return pd.DataFrame(rows, columns=PAIRED_COLUMNS)


def verdict(row) -> str:
    """'better' or 'worse' only where the interval excludes 0; otherwise 'within noise' ('no interval' without one)."""
    if np.isnan(row["ci_low"]):
        return "no interval"
    if row["ci_low"] > 0:
        return "better"
    if row["ci_high"] < 0:
        return "worse"
    return "within noise"
