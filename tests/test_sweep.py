"""Collecting DVC experiments into the ratio sweep."""

import numpy as np
import pandas as pd
import pytest

from sweep import (
    aggregate,
    comparison_markdown,
    experiment_records,
    merged_points,
    point_rows,
    points,
    produced_only,
    provenance_markdown,
    ranking_agreement,
    same_setup,
    seeds_markdown,
    setup_digest,
    summary_frame,
    sweep_markdown,
)


def benchmark(mcc: float, speedup: float, estimate: float, ratio: float | None) -> dict:
    """Benchmark metrics as `dvc exp show --json` gives them: a null (the unpruned model's ratio) is left out."""
    data = {"test": {"mcc": mcc, "loss": 0.5}, "latency_ms": {"batch_1": {"median": 8.0}},
            "speedup": {"batch_1": {"median": speedup}, "batch_32": {"median": speedup}},
            "mac_estimate": {"batch_1": {"speedup": estimate}, "batch_32": {"speedup": estimate}}}
    return {"data": data if ratio is None else {"prune_ratio": ratio, **data}}


def experiment(name: str, ratio: float, seed: int, mcc: float, ratio_in_metrics: float | None = None) -> dict:
    """An experiment at ``ratio`` whose head_random metrics were produced at ``ratio_in_metrics`` (default: ``ratio``)."""
    produced_at = ratio if ratio_in_metrics is None else ratio_in_metrics
    return {"name": name, "data": {
        "params": {"params.yaml": {"data": {"seed": 42, "prune": {"ratio": ratio}}}},
        "metrics": {f"reports/evaluate/sst2-none/seed-{seed}.json": benchmark(0.8, 1.0, 1.0, None),
                    f"reports/evaluate/sst2-head_random/seed-{seed}.json": benchmark(mcc, 1.25, 1.1, produced_at),
                    f"reports/finetune/sst2-none/seed-{seed}/metrics.json": {"data": {"step": 0}}}}}


def test_experiments_are_found_at_any_nesting_and_averaged_over_seeds_counting_each_run_once():
    shown = [{"rev": "workspace", **experiment("workspace", 0.2, 1, 0.6)},
             {"rev": "main", **experiment("main", 0.2, 1, 0.6)},  # the workspace's baseline: the same run
             {"rev": "old", "data": {"params": {"params.yaml": {"data": {"seed": 42, "prune": {"ratio": 0.2}}}},
                                     "metrics": {"reports/evaluate/sst2-mcap/seed-1.json": {"data": {"test": {}}},
                                                 "reports/evaluate/sst2-none.json": {"data": {"test": {}}}}}},
             {"experiments": [{"revs": [experiment("a", 0.2, 2, 0.7), experiment("b", 0.5, 1, 0.4)]}]}]
    records = list(experiment_records(shown))
    assert len(records) == 5  # the "old" commit's metrics (no prune_ratio, no seed folder) are skipped below
    summary = aggregate(points(records))
    assert ("sst2", "mcap", 0.2) not in summary
    mean, std, runs = summary[("sst2", "head_random", 0.2)]["mcc"]
    assert (mean, std, runs) == (pytest.approx(0.65), pytest.approx(0.0707, abs=1e-4), 2)  # sample std
    assert summary[("sst2", "head_random", 0.5)]["speedup_batch_1"][0] == pytest.approx(1.25)
    assert summary[("sst2", "none", None)]["mcc"][2] == 2  # one reference run per seed, whatever the ratio
    table = sweep_markdown(summary)
    assert "| Strategy | r=0.2 | r=0.5 |" in table
    assert "| 6. Random head pruning | 0.650 ± 0.071 | 0.400 |" in table
    assert "Unpruned reference (no ratio): MCC 0.800 ± 0.000, loss 0.500 ± 0.000, 2 run(s)." in table


def test_a_point_takes_the_ratio_its_model_was_pruned_at_not_the_experiments_parameter():
    # An experiment at 0.5 that did not rerun head_random still holds the 0.2 model's metrics.
    records = list(experiment_records([experiment("stale", 0.5, 1, 0.6, ratio_in_metrics=0.2)]))
    assert {(row["strategy"], row["ratio"]) for row in points(records)} == {("none", None), ("head_random", 0.2)}


def test_only_experiments_with_the_workspaces_setup_are_collected():
    workspace, other_ratio = experiment("workspace", 0.2, 1, 0.6), experiment("sweep-0.5", 0.5, 2, 0.4)
    other_ratio["data"]["params"]["params.yaml"]["data"].update(seeds=[2], tasks=["sst2"])  # varied by a sweep
    profile = experiment("cpu-scale", 0.2, 1, 0.7)
    profile["data"]["params"]["params.yaml"]["data"]["train"] = {"epochs": 2}  # another setup: not a sweep point
    kept, skipped = same_setup(list(experiment_records([workspace, other_ratio, profile])))
    assert [record["name"] for record in kept] == ["workspace", "sweep-0.5"]
    assert skipped == ["cpu-scale"]
    kept, skipped = same_setup(list(experiment_records([workspace, other_ratio, profile])), like="cpu-scale")
    assert [record["name"] for record in kept] == ["cpu-scale"] and skipped == ["workspace", "sweep-0.5"]


def test_the_summary_is_written_as_long_rows_and_compared_with_the_probe_scores():
    summary = {("sst2", "none", None): {"mcc": (0.8, float("nan"), 1)},
               ("sst2", "head_random", 0.2): {"mcc": (0.7, 0.01, 2)}, ("sst2", "head_random", 0.5): {"mcc": (0.5, 0.02, 2)},
               ("sst2", "head_sep", 0.2): {"mcc": (0.6, 0.0, 2)}, ("sst2", "mcap", 0.2): {"mcc": (0.1, 0.0, 2)}}
    frame = summary_frame(summary)
    assert list(frame.columns) == ["task", "strategy", "ratio", "metric", "mean", "std", "n"]
    assert frame[frame["strategy"] == "head_random"]["n"].tolist() == [2, 2]
    ranking = pd.DataFrame({"task": "sst2", "strategy": ["head_random", "head_random", "head_random", "head_sep", "mcap"],
                            "ratio": [0.2, 0.2, 0.5, 0.2, 0.2], "seed": [1, 2, 1, 1, 1],
                            "score": [0.5, 0.7, 0.3, 0.4, 0.9]})
    points_both, correlations = ranking_agreement(summary, ranking)
    assert set(points_both["strategy"]) == {"head_random", "head_sep"}  # mcap's δ depends on the ratio: left out
    assert points_both.set_index(["strategy", "ratio"])["probe_score"][("head_random", 0.2)] == pytest.approx(0.6)
    assert correlations["sst2"] == (pytest.approx(1.0), 3)
    degenerate = {key: {"mcc": (0.0, 0.0, 2)} for key in summary if key[2] is not None}  # a task that is not learnt
    assert np.isnan(ranking_agreement(degenerate, ranking)[1]["sst2"][0])


def test_a_sweep_run_in_chunks_keeps_every_chunks_points_and_refuses_another_setup(tmp_path):
    first = experiment("seed-42", 0.5, 1, 0.6)
    second = experiment("seed-43", 0.5, 1, 0.4)
    second["data"]["params"]["params.yaml"]["data"]["seed"] = 43  # another pruning seed: its own points
    rerun = experiment("seed-42-again", 0.5, 1, 0.65)  # the same key as the first chunk's: replaces it

    def chunk(records, commit):
        found = list(experiment_records(records))
        return [{**row, "commit": commit, "setup": setup_digest(found[0])} for row in points(found)]

    path = tmp_path / "points.csv"
    merged_points(None, chunk([first], "aaa")).to_csv(path, index=False)
    frame = merged_points(pd.read_csv(path), chunk([second], "bbb") + chunk([rerun], "bbb"))
    summary = aggregate(point_rows(frame))
    assert summary[("sst2", "head_random", 0.5)]["mcc"][0] == pytest.approx((0.4 + 0.65) / 2)
    assert summary[("sst2", "none", None)]["mcc"][2] == 1  # seed 43's experiment inherited seed 42's reference run
    assert "| sst2 | head_random | 0.5 | 42, 43 | 1 | 2 |" in seeds_markdown(frame)
    other = experiment("epochs-2", 0.5, 1, 0.6)
    other["data"]["params"]["params.yaml"]["data"]["train"] = {"epochs": 2}
    with pytest.raises(SystemExit, match="delete it to start a new sweep"):
        merged_points(frame, chunk([other], "ccc"))


def test_an_entry_an_experiment_inherited_is_counted_once_under_the_seed_and_setup_that_produced_it():
    """Experiments in the workspace start from the previous one's outputs; the committed baseline has another setup."""
    entropy_at_0_2, entropy_at_0_5 = benchmark(0.5, 1.1, 1.1, 0.2), benchmark(0.55, 1.2, 1.2, 0.5)

    def record(name, timestamp, seed, metrics):
        data = {"seed": seed, "prune": {"ratio": 0.5}, "data": {"max_eval_examples": 300 if name == "main" else 1821}}
        return {"name": name, "data": {"timestamp": timestamp, "params": {"params.yaml": {"data": data}}, "metrics": {
            f"reports/evaluate/sst2-{strategy}/seed-1.json": entry for strategy, entry in metrics.items()}}}

    shown = [record("workspace", None, 43, {"head_entropy": entropy_at_0_5, "head_random": benchmark(0.3, 1.2, 1.2, 0.5)}),
             record("main", "2026-01-01T00:00:00", 42, {"head_entropy": entropy_at_0_2, "head_random": benchmark(0.4, 1.1, 1.1, 0.2)}),
             {"experiments": [
                 record("s43", "2026-01-01T02:00:00", 43,
                        {"head_entropy": entropy_at_0_5, "head_random": benchmark(0.3, 1.2, 1.2, 0.5)}),
                 record("s42", "2026-01-01T01:00:00", 42,
                        {"head_entropy": entropy_at_0_5, "head_random": benchmark(0.35, 1.25, 1.2, 0.5)})]}]
    records = produced_only(list(experiment_records(shown)))
    assert [len(record["metrics"]) for record in records] == [0, 2, 1, 2]  # the workspace produced nothing
    kept, skipped = same_setup(records, like="s42")
    assert skipped == ["main"]
    found = {(row["strategy"], row["pruning_seed"], row["mcc"]) for row in points(kept)}
    assert found == {("head_entropy", 42, 0.55), ("head_random", 42, 0.35), ("head_random", 43, 0.3)}
    # Without the filter, seed 43 would count seed 42's entropy run again, and the baseline's 0.2 run (300 test
    # sentences) would enter the 1,821-sentence comparison.
    naive = {(row["strategy"], row["pruning_seed"], row["ratio"]) for row in points(list(experiment_records(shown))[2:])}
    assert ("head_entropy", 43, 0.5) in naive


def test_mcap_is_called_above_or_below_another_strategy_only_beyond_the_larger_std():
    summary = {("sst2", "none", None): {"mcc": (0.60, 0.01, 2)},
               ("sst2", "mcap", 0.5): {"mcc": (0.50, 0.02, 6)},
               ("sst2", "head_random", 0.5): {"mcc": (0.40, 0.05, 10)},   # 0.10 apart, std 0.05: above
               ("sst2", "head_gradient", 0.5): {"mcc": (0.52, 0.03, 2)},  # 0.02 apart, std 0.03: within noise
               ("sst2", "head_entropy", 0.5): {"mcc": (0.45, float("nan"), 1)},
               ("sst2", "head_random", 0.7): {"mcc": (0.30, 0.01, 10)}}   # no mcap at 0.7: no row
    rows = {line.split(" | ")[2]: line for line in comparison_markdown(summary, "mcap").splitlines() if line.startswith("| sst2")}
    assert set(rows) == {"head_random", "head_gradient", "head_entropy", "none"}
    assert rows["head_random"].endswith("| +0.100 | 0.050 | above |")
    assert rows["head_gradient"].endswith("| -0.020 | 0.030 | within noise |")
    assert rows["head_entropy"].endswith("not judged (one run) |")
    assert rows["none"].endswith("| -0.100 | 0.020 | below |")


def test_a_strategys_own_params_stay_out_of_the_shared_setup_but_must_agree_within_a_sweep():
    def iterative(name: str, seed: int, step: float) -> dict:
        record = experiment(name, 0.5, seed, 0.5)
        record["data"]["params"]["params.yaml"]["data"]["mcap"] = {"k": 60, "iterative_step": step, "iterative_passes": 1}
        record["data"]["metrics"] = {f"reports/evaluate/sst2-mcap_iterative/seed-{seed}.json": benchmark(0.5, 1.2, 1.2, 0.5)}
        return record

    older = experiment("before", 0.5, 1, 0.4)
    older["data"]["params"]["params.yaml"]["data"]["mcap"] = {"k": 60}  # before the strategy and its params existed
    before = list(experiment_records([older]))
    after = list(experiment_records([iterative("after", 2, 0.1)]))
    assert setup_digest(before[0]) == setup_digest(after[0])
    kept = merged_points(None, [{**row, "commit": "a", "setup": setup_digest(before[0])} for row in points(before)])
    new = points(after)
    assert new[0]["strategy_params"] == '{"mcap.iterative_step": 0.1, "mcap.iterative_passes": 1}'
    merged = merged_points(kept, [{**row, "commit": "b", "setup": setup_digest(after[0])} for row in new])
    assert aggregate(point_rows(merged))[("sst2", "mcap_iterative", 0.5)]["mcc"][2] == 1
    assert provenance_markdown(merged).endswith("mcap_iterative's own params: `mcap.iterative_step` 0.1, `mcap.iterative_passes` 1.")
    other_step = points(list(experiment_records([iterative("coarser", 3, 0.2)])))
    with pytest.raises(SystemExit, match="own params"):
        merged_points(merged, [{**row, "commit": "c", "setup": setup_digest(after[0])} for row in other_step])
