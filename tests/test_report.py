"""Table I assembly and the README's generated results block."""

import json
import sys
from pathlib import Path
from statistics import mean, stdev

import pandas as pd
import pytest
import yaml

import render
from mcap.report import (
    build_table,
    cells_table,
    load_runs,
    markdown_table,
    read_labels,
    render_report,
    row_order,
    summary,
)
from mcap.strategies import get_strategy

ROOT = Path(__file__).resolve().parents[1]


def fake_benchmark(latency_ms: float, heads: int, estimate: float, speedup: float = 1.0, mcc: float = 0.5) -> dict:
    timing = {"median": latency_ms, "q1": latency_ms * 0.9, "q3": latency_ms * 1.1, "iqr": latency_ms * 0.2}
    return {
        "test": {"mcc": mcc, "loss": 0.4, "accuracy": 0.8},
        "latency_ms": {"batch_1": timing, "batch_32": {**timing, "median": latency_ms * 10}},
        "speedup": {"batch_1": {"median": speedup}, "batch_32": {"median": speedup * 1.1}},
        "flops": {"mean_length": {"dense": 2e9, "nonzero": 1.5e9}},
        "nonzero_parameters": 1e6, "heads": heads,
        "mac_estimate": {"batch_1": {"speedup": estimate}, "batch_32": {"speedup": estimate * 1.05}},
    }


def labels(*strategies: str) -> dict[str, str]:
    return {strategy: get_strategy(strategy).label for strategy in strategies}


def test_rows_follow_the_numbers_of_their_labels_with_unnumbered_ones_last():
    given = {"none": "8. BERT fine-tuning", "my_new": "Mine", "head_gradient": "6b. Gradient", "mine_too": "Also mine",
             "head_random": "6. Random", "imp": "1. IMP", "far": "12. Far"}
    assert row_order(given) == ["imp", "head_random", "head_gradient", "none", "far", "my_new", "mine_too"]
    assert row_order(labels("none", "mcap_iterative", "head_sep", "mcap", "imp")) == [
        "imp", "head_sep", "mcap", "mcap_iterative", "none"]


def test_labels_are_read_from_what_the_prune_stage_recorded(tmp_path):
    for strategy, label in (("head_random", "6. Random head pruning"), ("my_new", "9. Mine")):
        (tmp_path / "sst2" / f"{strategy}-0.2" / "seed-42").mkdir(parents=True)
        (tmp_path / "sst2" / f"{strategy}-0.2" / "seed-42" / "heads.json").write_text(json.dumps({"label": label}))
    assert read_labels(tmp_path, "sst2", ["my_new", "head_random"], 0.2) == {
        "my_new": "9. Mine", "head_random": "6. Random head pruning"}


def test_speedups_come_from_the_interleaved_measurement_and_are_compared_with_each_batch_sizes_estimate():
    benchmarks = {("sst2", "none"): [fake_benchmark(10.0, 72, 1.0)],
                  ("sst2", "head_random"): [fake_benchmark(8.0, 58, 1.1, speedup=1.25)]}
    table = build_table(benchmarks, labels("none", "head_random")).assign(ratio=0.2)
    row = table.set_index("strategy").loc["head_random"]
    assert row["speedup_batch_1"] == pytest.approx(1.25)
    assert row["mac_estimate_batch_1"] == pytest.approx(1.1) and row["mac_estimate_batch_32"] == pytest.approx(1.155)
    assert row["speedup_batch_32_vs_estimate"] == pytest.approx(1.375 / 1.155)
    assert summary(table)["sst2"] == {"none": {"mcc": 0.5, "loss": 0.4, "speedup_b32": 1.1},
                                      "head_random": {"mcc": 0.5, "loss": 0.4, "speedup_b32": 1.375}}
    markdown = markdown_table(table, "sst2")
    assert "| 6. Random head pruning | 58 | 8.0 ± 1.6 |" in markdown
    assert "| 0.5000 |" in markdown and "±  0.5" not in markdown  # one seed: no spread shown


def test_quality_is_mean_and_std_over_every_fine_tuned_model_and_speed_over_every_architecture(tmp_path):
    """Test metrics come from the finetune stage's cells (one per fine-tuning seed, holding each pruning seed's model),
    latency from the latency stage, which timed each pruned architecture once."""
    latency = {f"mcap-0.2/seed-{p}": {k: v for k, v in fake_benchmark(8.0, 58, 1.1, speedup=1.0 + p / 10).items()
                                      if k != "test"} for p in (1, 2)}
    (tmp_path / "latency").mkdir()
    (tmp_path / "latency" / "sst2.json").write_text(json.dumps(latency))
    mccs = {(42, 1): 0.4, (42, 2): 0.5, (43, 1): 0.6, (43, 2): 0.5}
    for seed in (42, 43):
        path = tmp_path / "cells" / "sst2" / "mcap-0.2" / f"seed-{seed}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"runs": {str(p): {"test": {"mcc": mccs[(seed, p)], "loss": 0.4, "accuracy": 0.8}}
                                             for p in (1, 2)}}))
    runs = load_runs(tmp_path, ["sst2"], ["mcap"], 0.2, [42, 43])
    assert sorted((run["finetune_seed"], run["pruning_seed"]) for run in runs[("sst2", "mcap")]) == sorted(mccs)
    table = build_table(runs, labels("mcap"))
    row = table.iloc[0]
    assert (row["seeds"], row["mcc"], row["mcc_std"]) == (4, pytest.approx(0.5), pytest.approx(stdev(mccs.values())))
    assert row["speedup_batch_1"] == pytest.approx(1.15)
    assert "| 0.5000 ± 0.0816 |" in markdown_table(table, "sst2")
    cells = cells_table(runs, 0.2)
    assert sorted(zip(cells.finetune_seed, cells.pruning_seed, cells.mcc)) == sorted((*k, v) for k, v in mccs.items())


def test_report_places_the_papers_table_below_ours():
    table = build_table({("cola", "none"): [fake_benchmark(10.0, 72, 1.0)], ("subj", "mcap"): [fake_benchmark(9.0, 58, 1.1)]},
                        labels("none", "mcap")).assign(ratio=0.2)
    text = render_report(table, ["cola"], "setup line", ["subj"], ["sst2", "cola"])
    assert text.index("## cola") < text.index("## subj — transfer") < text.index("The paper's Table I")
    assert "| 7. MCAP (theirs) | 124 |" in text
    assert "| 7. MCAP | 58 | 9.0 ± 1.8 |" in text.split("## subj")[1]


def test_readme_render_replaces_only_the_marked_block():
    original = f"intro\n{render.START}\nold numbers\n{render.END}\noutro\n"
    assert render.render(original, "new numbers") == f"intro\n{render.START}\nnew numbers\n{render.END}\noutro\n"
    with pytest.raises(ValueError, match="lacks the markers"):
        render.render("no markers", "x")


def test_relative_links_are_rebased_on_the_report_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "reports").mkdir()
    (tmp_path / "reports" / "a.md").write_text("# A\n![plot](figures/x.png) [web](https://example.org)\n")
    assert render.generated_block([Path("reports/a.md")], Path("README.md")) == (
        "## A\n![plot](reports/figures/x.png) [web](https://example.org)")
    assert render.generated_block([Path("reports/a.md")], Path("docs/results.md")) == (
        "## A\n![plot](../reports/figures/x.png) [web](https://example.org)")


def block_between(text: str, start: str, end: str) -> str:
    return text.split(start, 1)[1].split(end, 1)[0].strip()


def test_committed_docs_show_exactly_the_committed_reports(monkeypatch):
    """docs/results.md (``make repro`` renders it) and the README's headline (``python tools/render.py readme``)."""
    monkeypatch.chdir(ROOT)
    results = block_between(render.RESULTS.read_text(), render.START, render.END)
    assert results == render.generated_block(render.sources()).strip()
    headline = block_between(render.README.read_text(), render.HEADLINE_START, render.HEADLINE_END)
    assert headline == render.readme_headline().strip()


def test_results_are_not_rendered_from_stages_behind_the_code_or_params(monkeypatch, tmp_path):
    monkeypatch.chdir(ROOT)
    status = {  # as `dvc status --json` reports it
        "split": [{"changed deps": {"src/mcap/data.py": "modified", "params.yaml": {"data": "modified"}}}],
        "pattern_cnn": [{"changed deps": {"models/cache_only": "deleted"}}, {"changed outs": {"models/x": "not in cache"}}],
        "report": ["changed command"],
    }
    assert render.stale_stages(status) == {"split": ["src/mcap/data.py", "params.yaml: data"], "report": ["its command"]}
    monkeypatch.setattr(render, "dvc_status", lambda: status)
    monkeypatch.setattr(render, "RESULTS", tmp_path / "results.md")
    monkeypatch.setattr(sys, "argv", ["render.py", "results"])
    with pytest.raises(SystemExit, match=r"2 stage\(s\) are not up to date .* split \(src/mcap/data.py"):
        render.main()
    assert not (tmp_path / "results.md").exists()
    monkeypatch.setattr(render, "dvc_status", lambda: {"pattern_cnn": status["pattern_cnn"]})  # a fresh clone's cache
    (tmp_path / "results.md").write_text(f"{render.START}\n{render.END}\n")
    render.main()
    assert "Table I" in (tmp_path / "results.md").read_text()  # rendered: missing cached files are no staleness


def test_the_readme_stays_short():
    """What and why, the two commands, the pipeline, one headline table, how to add a strategy, links."""
    assert len((ROOT / "README.md").read_text().splitlines()) <= 200


def test_the_split_leakage_is_rendered_from_the_split_stages_metrics(tmp_path):
    path = tmp_path / "leakage.json"
    path.write_text(json.dumps({"sst2": {"validation_inside_train": {"grouped": 0.0651, "random": 0.8849}}}))
    assert "| sst2 | 0.065 | 0.885 |" in render.leakage_markdown(path)


def test_the_controller_diagnostics_are_rendered_from_the_controller_stages_output(tmp_path, monkeypatch):
    from mcap.controller import controller_diagnostics

    monkeypatch.chdir(tmp_path)
    history = [{"total": 2.0}] * 10 + [{"total": 0.5}] * 10
    deltas = {seed: {"a": [[0.1, 0.9], [0.5, 0.3]], "b": [[0.2, 0.8], [0.6, 0.1]]} for seed in (42, 43)}
    path = tmp_path / "diagnostics.json"
    path.write_text(json.dumps(controller_diagnostics({42: history, 43: history}, deltas, 42, ["a", "b"])))
    variant = tmp_path / "label-free.json"  # kept before the ranking stage measured the agreement: its own, for a
    variant.write_text(json.dumps({**controller_diagnostics({42: history[::-1], 43: history}, deltas, 42, ["a", "b"]),
                                   "gradient_spearman": {"a": 0.3}}))
    agreement = tmp_path / "agreement.json"  # the ranking stage's, per task and strategy
    agreement.write_text(json.dumps({"a": {"mcap": 0.8, "head_sep": 0.1}, "b": {"head_sep": 0.2}}))
    table = render.controller_markdown(path, {"label-free": variant, "missing": tmp_path / "none.json"}, agreement.name)
    assert "| Measure | this run | label-free | Target |" in table and "missing" not in table
    assert "| 2.0000 → 0.5000 (0.25×) | 0.5000 → 2.0000 (4.00×) | ≤ 0.80× |" in table
    assert "controller seeds 42, 43 (per training task) | 1.00 | 1.00 |" in table
    assert "a vs b 0.80" in table and "| a 0.80 | a 0.30 |" in table
    assert "| a 0.80 | a 0.30 |" not in render.controller_markdown(path, {"label-free": variant}, "no.json")


def test_the_seed_comparison_is_checked_against_the_mcap_targets(tmp_path):
    rows = [("mcap", 0.5, 0.50, 0.02), ("head_random", 0.5, 0.40, 0.05), ("head_gradient", 0.5, 0.53, 0.03),
            ("mcap", 0.7, 0.40, 0.04), ("head_random", 0.7, 0.37, 0.04), ("none", None, 0.6, 0.01),
            ("mcap_iterative", 0.5, 0.52, 0.01)]
    path = tmp_path / "sweep.csv"
    pd.DataFrame([{"task": "sst2", "strategy": s, "ratio": r, "metric": "mcc", "mean": m, "std": sd, "n": 2}
                  for s, r, m, sd in rows] + [{"task": "sst2", "strategy": "mcap", "ratio": 0.5, "metric": "loss",
                                              "mean": 0.1, "std": 0.0, "n": 2}]).to_csv(path, index=False)
    lines = render.comparison_targets_markdown(path).splitlines()
    assert "| mcap | above `head_random` at 0.5 by more than the larger std (0.050) | 0.500 ± 0.020 | 0.400 ± 0.050 | +0.100 | yes |" in lines
    assert "| mcap | above `head_random` at 0.7 by more than the larger std (0.040) | 0.400 ± 0.040 | 0.370 ± 0.040 | +0.030 | no |" in lines
    assert "| mcap | within 0.02 of `head_gradient` at 0.5 | 0.500 ± 0.020 | 0.530 ± 0.030 | -0.030 | no |" in lines
    assert "| mcap_iterative | within 0.02 of `head_gradient` at 0.5 | 0.520 ± 0.010 | 0.530 ± 0.030 | -0.010 | yes |" in lines
    assert len([line for line in lines if line.startswith("| mcap_iterative |")]) == 2  # no 0.7 point: no 0.7 row
    once = pd.read_csv(path)
    once.loc[(once["strategy"] == "head_random") & (once["ratio"] == 0.5), "std"] = float("nan")  # one run: no spread
    once.to_csv(path, index=False)
    assert render.comparison_targets_markdown(path).splitlines()[6].endswith("| +0.100 | no |")


def test_the_iterative_controllers_diagnostics_are_rendered_per_step(tmp_path, monkeypatch):
    from mcap.controller import iterative_diagnostics

    monkeypatch.chdir(tmp_path)
    history = [{"total": 1.0, "ratio": 0.1}] * 10 + [{"total": 0.5, "ratio": 0.1}] * 10 + [{"total": 2.0, "ratio": 0.2}] * 20
    order = {seed: {"a": [[1.1, 2.5], [1.2, 2.9]], "b": [[1.3, 2.4], [1.1, 2.8]]} for seed in (42, 43)}
    path = tmp_path / "diagnostics.json"
    path.write_text(json.dumps(iterative_diagnostics({42: history, 43: history}, order, 42, ["a", "b"])))
    agreement = tmp_path / "agreement.json"
    agreement.write_text(json.dumps({"a": {"mcap_iterative": 1.0, "mcap": 0.5}, "b": {"mcap": 0.4}}))
    lines = render.iterative_controller_markdown(path, agreement.name).splitlines()
    assert "| 0.1 | 1.0000 → 0.5000 | 0.50× |" in lines and "| 0.2 | 2.0000 → 2.0000 | 1.00× |" in lines
    assert "* Smallest Spearman of the removal order between controller seeds 42, 43: 1.00." in lines
    assert any(line.startswith("* Between tasks: a vs b 0.80. With `head_gradient`'s scores: a 1.00.") for line in lines)


def test_the_headline_shows_both_ratios_per_strategy_with_its_seeds_and_hardware(tmp_path):
    comparison, points = tmp_path / "sweep.csv", tmp_path / "points.csv"
    pd.DataFrame([
        ("sst2", "none", None, "mcc", 0.55, 0.01, 2), ("sst2", "mcap", 0.2, "mcc", 0.5, 0.05, 6),
        ("sst2", "mcap", 0.2, "speedup_batch_32", 1.07, 0.01, 6), ("sst2", "mcap", 0.5, "mcc", 0.45, 0.04, 6),
        ("sst2", "mcap", 0.5, "speedup_batch_32", 1.22, 0.02, 6), ("sst2", "head_random", 0.5, "mcc", 0.35, 0.12, 10),
        ("subj", "mcap", 0.5, "mcc", 0.7, 0.01, 6),
    ], columns=["task", "strategy", "ratio", "metric", "mean", "std", "n"]).to_csv(comparison, index=False)
    rows = [(r, p, f, "sst2", s) for s, r, pruning in (("mcap", 0.5, (42, 43, 44)), ("head_random", 0.5, (42, 43)),
                                                     ("none", None, (42,))) for p in pruning for f in (42, 43)]
    frame = pd.DataFrame(rows, columns=["ratio", "pruning_seed", "seed", "task", "strategy"])
    frame.assign(device=["CPU Test"] * (len(rows) - 2) + [None] * 2, threads=2).to_csv(points, index=False)
    lines = render.headline_markdown(comparison, points).splitlines()
    assert lines[0] == ("| Strategy | MCC @ 0.2 | speed-up @ 0.2 | MCC @ 0.5 | speed-up @ 0.5 "
                        "| Seeds (pruning or controller × fine-tuning) |")
    assert lines[2] == "| 6. Random head pruning | – | – | 0.350 ± 0.120 | – | 2 × 2 |"  # in Table I's order
    assert lines[3] == "| 7. MCAP | 0.500 ± 0.050 | 1.07× | 0.450 ± 0.040 | 1.22× | 3 × 2 |"
    assert lines[4] == "| 8. BERT fine-tuning (unpruned) | 0.550 ± 0.010 | reference | 0.550 ± 0.010 | reference | 1 × 2 |"
    assert "in one process, on CPU Test with 2 threads; on 2-core CPU machines whose device 2 of the points do not" in lines[-1]
    assert len(lines) == 7  # no subj row


def test_the_structured_headline_takes_the_fastest_row_within_each_loss_per_mode(tmp_path):
    path = tmp_path / "structured.csv"
    rows = [("none", "", 0.0, 0.55, 0.0, 1.0, None), ("head_gradient", "before", 0.1, 0.5, -0.05, 1.2, None),
            ("structured_gradient", "before", 0.2, 0.545, -0.005, 1.3, None),
            ("structured_mcap", "before", 0.3, 0.53, -0.02, 1.45, 1.5),
            ("structured_gradient", "after", 0.3, 0.545, -0.005, 1.5, 1.4),
            ("structured_gradient", "after", 0.5, 0.53, -0.02, 1.9, 1.8),
            ("structured_gradient", "after", 0.6, 0.40, -0.15, 2.5, 2.4)]
    pd.DataFrame([{"task": "sst2", "strategy": s, "mode": m, "mac_ratio": r, "n": 2, "mcc_mean": mcc, "mcc_std": 0.01,
                   "mcc_delta": d, "speedup_torch_b32": t, "speedup_onnx_b32": o} for s, m, r, mcc, d, t, o in rows]
                 ).to_csv(path, index=False)
    modes = [("before", "before", path, "small"), ("after", "after", path, "large"),
             ("after", "elsewhere", tmp_path / "missing.csv", "none")]
    lines = render.structured_headline_markdown(render.swept_structured_modes(modes)).splitlines()
    assert lines[2].startswith("| before, `structured_gradient`, ≤ 1 MCC points lost | small | 20% | 0.545 ± 0.010 |")
    assert lines[3].startswith("| before, `structured_mcap`, ≤ 3 MCC points lost | small | 30% | 0.530 ± 0.010 |")
    assert lines[4].startswith("| after, `structured_gradient`, ≤ 1 MCC points lost | large |")
    assert lines[4].endswith("| large | 30% | 0.545 ± 0.010 | -0.5 | 1.50× | 1.40× | 2 |")
    assert lines[5].endswith("| 50% | 0.530 ± 0.010 | -2.0 | 1.90× | 1.80× | 2 |")  # 60% loses more than 3 points
    assert len(lines) == 2 + 4 + 2 and "elsewhere" not in "\n".join(lines)  # a missing sweep is left out


def keep_run(folder, name: str, rows: list[dict], *, seed: int = 42, ratio: float = 0.2, commit: str = "a" * 40,
             setup: str | None = None) -> None:
    """Keep a run as tools/structured_sweep.py's `add` does: its CSV (task sst2, n 2 unless a row says), report,
    commit and params."""
    run = folder / name
    run.mkdir()
    pd.DataFrame([{"task": "sst2", "n": 2, **row} for row in rows]).to_csv(run / "structured.csv", index=False)
    (run / "structured.md").write_text(f"# title\n\n{setup or f'setup of {name}'}\n\n## Targets\n")
    (run / "commit").write_text(commit + "\n")
    (run / "params.yaml").write_text(yaml.safe_dump({"seed": seed, "prune": {"ratio": ratio}}))


def test_a_structured_sweep_keeps_named_runs_and_shows_each_row_once_from_the_first_run(tmp_path):
    """Rows shared by two runs come from the first (the run that measured them); the setup from the widest run."""
    import structured_sweep

    def row(strategy: str, mode: str, mac_ratio: float, mcc: float, delta: float) -> dict:
        return {"strategy": strategy, "mode": mode, "mac_ratio": mac_ratio, "mcc_mean": mcc, "mcc_delta": delta}

    shared = [row("none", "", 0.0, 0.55, 0.0), row("structured_gradient", "after", 0.3, 0.53, -0.02)]
    keep_run(tmp_path, "ratio-0.2", shared, commit="a" * 40)
    keep_run(tmp_path, "ratio-0.2-structured_mcap", shared + [row("structured_mcap", "after", 0.3, 0.40, -0.15)],
             commit="b" * 40)
    keep_run(tmp_path, "ratio-0.4-before", shared + [row("structured_mcap", "before", 0.4, 0.45, -0.10)], ratio=0.4,
             commit="c" * 40)  # one more ratio, one budget
    table = structured_sweep.merged_table(tmp_path)
    assert sorted(zip(table["strategy"], table["mode"], table["mac_ratio"])) == [
        ("none", "", 0.0), ("structured_gradient", "after", 0.3), ("structured_mcap", "after", 0.3),
        ("structured_mcap", "before", 0.4)]
    setup = structured_sweep.setup_of(tmp_path)
    assert setup.startswith("setup of ratio-0.2-structured_mcap")  # the widest run's, which describes every row
    assert (f"ratio-0.2: `{'a' * 10}`, ratio-0.2-structured_mcap: `{'b' * 10}`, "
            f"ratio-0.4-before: `{'c' * 10}`") in setup


def test_a_structured_sweep_takes_a_row_from_a_run_named_to_sort_first_and_names_the_runs_that_rearranged(tmp_path):
    import structured_sweep

    for name, mcc, searched in (("after-fine-tuning-seed-42", 0.53, 0.50), ("ratio-0.2", 0.51, None)):
        keep_run(tmp_path, name, [
            {"strategy": "none", "mode": "", "mac_ratio": 0.0, "mcc_mean": 0.55, "mcc_delta": 0.0},
            {"strategy": "structured_gradient", "mode": "after", "mac_ratio": 0.3, "mcc_mean": mcc,
             "mcc_delta": mcc - 0.55, "mcc_without_rearrangement_mean": searched}])
    table = structured_sweep.merged_table(tmp_path).set_index("strategy")
    assert table.loc["structured_gradient", "mcc_mean"] == 0.53  # the rearranged run's row, first in name order
    assert table.loc["structured_gradient", "mcc_without_rearrangement_mean"] == 0.50
    assert "Runs after-fine-tuning-seed-42 rearranged the Fisher masks" in setup_of_runs(tmp_path)
    assert "ratio-0.2 rearranged" not in setup_of_runs(tmp_path)


def test_a_structured_sweep_does_not_pool_a_rearranged_row_with_another_seeds_row_made_without(tmp_path):
    import structured_sweep

    for name, seed, mcc, searched in (("after-fine-tuning-seed-42", 42, 0.53, 0.50), ("ratio-0.2-seed-43", 43, 0.40, None)):
        keep_run(tmp_path, name, [{"strategy": "structured_gradient", "mode": "after", "mac_ratio": 0.3, "mcc_mean": mcc,
                                   "mcc_std": 0.01, "mcc_delta": mcc - 0.55,
                                   "mcc_without_rearrangement_mean": searched}], seed=seed)
    row = structured_sweep.merged_table(tmp_path).iloc[0]
    assert (row["n"], row["mcc_mean"]) == (2, 0.53)  # seed 43's row, made without rearrangement, stays out


def test_a_structured_sweep_pools_the_runs_of_several_pruning_seeds(tmp_path):
    """A row kept for pruning seeds 42 and 43 shows n, mean, std and ΔMCC over all four runs (two fine-tuning seeds
    each) as if computed from the four MCCs; before fine-tuning, the rows of one prune.ratio pool although the MAC
    fraction each seed's pruning reached differs."""
    import structured_sweep

    pruned, unpruned = {42: [0.60, 0.64], 43: [0.50, 0.58]}, {42: [0.70, 0.72], 43: [0.69, 0.71]}
    for seed, reached, speedup in ((42, 0.398, 1.5), (43, 0.402, 1.7)):
        keep_run(tmp_path, f"ratio-0.4-before-seed-{seed}", [
            {"strategy": "none", "mode": "", "mac_ratio": 0.0, "mcc_mean": mean(unpruned[seed]),
             "mcc_std": stdev(unpruned[seed]), "mcc_delta": 0.0, "speedup_torch_b32": 1.0},
            {"strategy": "structured_mcap", "mode": "before", "mac_ratio": reached, "mcc_mean": mean(pruned[seed]),
             "mcc_std": stdev(pruned[seed]), "mcc_delta": mean(pruned[seed]) - mean(unpruned[seed]),
             "speedup_torch_b32": speedup}],
            seed=seed, ratio=0.4, setup="setup. Measured on CPU Xeon with 2 threads.")
    table = structured_sweep.merged_table(tmp_path).set_index("strategy")
    every, every_unpruned = pruned[42] + pruned[43], unpruned[42] + unpruned[43]
    row = table.loc["structured_mcap"]
    assert row["n"] == 4 and row["mcc_mean"] == pytest.approx(mean(every)) and row["mcc_std"] == pytest.approx(stdev(every))
    assert row["mcc_delta"] == pytest.approx(mean(every) - mean(every_unpruned))
    assert row["mac_ratio"] == pytest.approx(0.4) and row["speedup_torch_b32"] == pytest.approx(1.6)
    assert table.loc["none", "n"] == 4 and table.loc["none", "mcc_std"] == pytest.approx(stdev(every_unpruned))
    assert "pruning seeds 42, 43" in structured_sweep.setup_of(tmp_path) and "Xeon" not in setup_of_runs(tmp_path)
    other = tmp_path / "ratio-0.4-before-seed-43" / "structured.md"  # timed on another machine: each run's is named
    other.write_text(other.read_text().replace("CPU Xeon", "CPU EPYC"))
    assert "ratio-0.4-before-seed-42: `aaaaaaaaaa` (CPU Xeon), ratio-0.4-before-seed-43: `aaaaaaaaaa` (CPU EPYC)" in (
        setup_of_runs(tmp_path))


def setup_of_runs(folder):
    """The merged setup's sentence about the kept runs (after the widest run's own setup paragraph)."""
    import structured_sweep

    return structured_sweep.setup_of(folder).split("\n\n")[1]
