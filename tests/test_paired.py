"""Paired comparison over a grid of cells: the bootstrap interval finds a known effect, covers it at about its
nominal rate, says 'within noise' when there is none, and refuses grids it cannot pair."""

import numpy as np
import pandas as pd
import pytest

from mcap.paired import PAIRED_COLUMNS, paired_difference, paired_table, seed_table, verdict


def synthetic_cells(effects: dict[str, float], pruning_seeds: dict[str, int], finetune_seeds: int, rng,
                    finetune_spread: float = 0.05, pruning_spread: float = 0.01, noise: float = 0.005) -> pd.DataFrame:
    """MCC = 0.5 + the strategy's effect + a fine-tuning seed's luck (shared by every strategy at that seed, as a
    shared task head and batch order give) + a pruning seed's effect + noise."""
    luck = rng.normal(0, finetune_spread, finetune_seeds)
    rows = []
    for strategy, effect in effects.items():
        pruning = rng.normal(0, pruning_spread, pruning_seeds[strategy])
        for p, pruning_effect in enumerate(pruning):
            for f in range(finetune_seeds):
                rows.append({"task": "sst2", "strategy": strategy, "ratio": 0.5, "pruning_seed": 40 + p,
                             "finetune_seed": 40 + f, "mcc": 0.5 + effect + luck[f] + pruning_effect + rng.normal(0, noise)})
    return pd.DataFrame(rows)


def test_a_known_effect_is_covered_and_excludes_zero():
    cells = synthetic_cells({"mcap": 0.03, "head_gradient": 0.0}, {"mcap": 3, "head_gradient": 3}, 6,
                            np.random.default_rng(1))
    (row,) = paired_table(cells, references=("head_gradient",)).to_dict("records")
    assert row["strategy"] == "mcap" and row["n_pairs"] == 6
    assert row["ci_low"] < 0.03 < row["ci_high"]
    assert row["ci_low"] > 0 and verdict(row) == "better"


def test_pairing_removes_the_fine_tuning_seeds_luck():
    """The seeds' shared luck (spread 0.05) is ten times the effect's size; paired, the effect still shows."""
    cells = synthetic_cells({"a": -0.02, "head_random": 0.0}, {"a": 3, "head_random": 3}, 6, np.random.default_rng(2),
                            finetune_spread=0.2, pruning_spread=0.003, noise=0.003)
    (row,) = paired_table(cells, references=("head_random",)).to_dict("records")
    assert verdict(row) == "worse"
    unpaired_spread = cells.groupby("strategy")["mcc"].std().min()
    assert unpaired_spread > 10 * abs(row["mean_delta"])


def test_no_effect_is_within_noise():
    cells = synthetic_cells({"head_entropy": 0.0, "head_gradient": 0.0}, {"head_entropy": 1, "head_gradient": 3}, 5,
                            np.random.default_rng(3))
    (row,) = paired_table(cells, references=("head_gradient",)).to_dict("records")
    assert row["ci_low"] < 0 < row["ci_high"] and verdict(row) == "within noise"


def test_the_interval_covers_the_true_effect_at_about_its_nominal_rate():
    """Over many synthetic grids (4 pruning x 10 fine-tuning seeds), the 95% interval holds the true effect in
    most of them. Percentile intervals from few units cover somewhat less than 95%; far less would be a bug."""
    rng = np.random.default_rng(4)
    covered = 0
    trials = 200
    for _ in range(trials):
        cells = synthetic_cells({"a": 0.02, "b": 0.0}, {"a": 4, "b": 4}, 10, rng, pruning_spread=0.02, noise=0.01)
        tables = {name: seed_table(group, "mcc") for name, group in cells.groupby("strategy")}
        result = paired_difference(tables["a"], tables["b"], seed=0, replicates=2000)
        covered += result["ci_low"] <= 0.02 <= result["ci_high"]
    assert 0.85 <= covered / trials <= 0.995


def test_the_table_pairs_each_strategy_with_each_reference_it_shares_a_task_and_ratio_with():
    rng = np.random.default_rng(5)
    cells = synthetic_cells({"none": 0.0, "head_random": 0.0, "head_gradient": 0.0, "mcap": 0.0},
                            {"none": 1, "head_random": 2, "head_gradient": 1, "mcap": 2}, 2, rng)
    other_ratio = cells[cells.strategy == "mcap"].assign(ratio=0.2)  # no reference ran at 0.2: no row
    table = paired_table(pd.concat([cells, other_ratio]))
    assert list(table.columns) == PAIRED_COLUMNS
    pairs = set(zip(table.strategy, table.reference))
    assert pairs == {(s, r) for r in ("head_gradient", "head_random")
                     for s in ("none", "head_random", "head_gradient", "mcap") if s != r}
    assert set(table.ratio) == {0.5}
    again = paired_table(pd.concat([cells, other_ratio]))
    pd.testing.assert_frame_equal(table, again)  # the bootstrap is seeded: a rerun gives the same intervals


def test_one_fine_tuning_seed_gives_no_interval():
    cells = synthetic_cells({"a": 0.1, "head_gradient": 0.0}, {"a": 3, "head_gradient": 1}, 1, np.random.default_rng(7))
    (row,) = paired_table(cells, references=("head_gradient",)).to_dict("records")
    assert row["n_pairs"] == 1 and np.isnan(row["ci_low"]) and np.isnan(row["ci_high"])
    assert verdict(row) == "no interval"


def test_grids_that_cannot_be_paired_are_refused():
    rng = np.random.default_rng(6)
    cells = synthetic_cells({"a": 0.0, "head_gradient": 0.0}, {"a": 2, "head_gradient": 2}, 3, rng)
    with pytest.raises(ValueError, match="repeat a key"):
        paired_table(pd.concat([cells, cells.head(1)]))
    missing_cell = cells.drop(index=cells[(cells.strategy == "a")].index[0])
    with pytest.raises(ValueError, match="incomplete"):
        paired_table(missing_cell)
    apart = cells.assign(finetune_seed=np.where(cells.strategy == "a", cells.finetune_seed + 100, cells.finetune_seed))
    with pytest.raises(ValueError, match="no fine-tuning seed"):
        paired_table(apart)
