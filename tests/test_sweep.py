"""Collecting DVC experiments into the ratio sweep."""

import pytest

from mcap.sweep import aggregate, experiment_records, points, sweep_markdown


def benchmark(mcc: float, speedup: float, bound: float) -> dict:
    return {"data": {"test": {"mcc": mcc, "loss": 0.5}, "latency_ms": {"batch_1": {"median": 8.0}},
                     "speedup": {"batch_1": {"median": speedup}, "batch_32": {"median": speedup}},
                     "mac_bound_speedup": bound}}


def experiment(name: str, ratio: float, seed: int, mcc: float) -> dict:
    return {"name": name, "data": {
        "params": {"params.yaml": {"data": {"seed": seed, "prune": {"ratio": ratio}}}},
        "metrics": {f"reports/benchmark/sst2-none/seed-{seed}.json": benchmark(0.8, 1.0, 1.0),
                    f"reports/benchmark/sst2-head_random/seed-{seed}.json": benchmark(mcc, 1.25, 1.1),
                    f"reports/finetune/sst2-none/seed-{seed}/metrics.json": {"data": {"step": 0}}}}}


def test_experiments_are_found_at_any_nesting_and_averaged_over_seeds_counting_each_run_once():
    shown = [{"rev": "workspace", **experiment("workspace", 0.2, 1, 0.6)},
             {"rev": "main", **experiment("main", 0.2, 1, 0.6)},  # the workspace's baseline: the same run
             {"rev": "old", "data": {"params": {"params.yaml": {"data": {"seed": 1, "prune": {"ratio": 0.2}}}},
                                     "metrics": {"reports/benchmark/sst2-mcap.json": benchmark(0.1, 1.0, 1.0)}}},
             {"experiments": [{"revs": [experiment("a", 0.2, 2, 0.7), experiment("b", 0.5, 1, 0.4)]}]}]
    records = list(experiment_records(shown))
    assert len(records) == 5  # the "old" commit's layout (no seed in the path) is skipped below
    summary = aggregate(points(records))
    mean, std, runs = summary[("sst2", "head_random", 0.2)]["mcc"]
    assert (mean, std, runs) == (pytest.approx(0.65), pytest.approx(0.05), 2)
    assert summary[("sst2", "head_random", 0.5)]["speedup_batch_1"][0] == pytest.approx(1.25)
    table = sweep_markdown(summary)
    assert "| 6. Random head pruning | 0.650 ± 0.050 | 0.400 | 0.500 ± 0.000 | 0.500 |" in table
