"""Table I assembly and the README's generated results block."""

import json
import subprocess
import sys
from pathlib import Path
from statistics import stdev

import pandas as pd
import pytest
import yaml

import render
from conftest import machine
from mcap.params import Params, load_params
from mcap.report import (
    build_table,
    cells_table,
    load_runs,
    machines_line,
    markdown_table,
    read_labels,
    render_report,
    row_order,
    summary,
)
from mcap.strategies import get_strategy

ROOT = Path(__file__).resolve().parents[1]
RAW_PARAMS = load_params(ROOT / "params.yaml")


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
                                             for p in (1, 2)}, "machine": machine(str(seed))}))
    runs = load_runs(tmp_path, ["sst2"], ["mcap"], 0.2, [42, 43])
    assert sorted((run["finetune_seed"], run["pruning_seed"]) for run in runs[("sst2", "mcap")]) == sorted(mccs)
    table = build_table(runs, labels("mcap"))
    row = table.iloc[0]
    assert (row["seeds"], row["mcc"], row["mcc_std"]) == (4, pytest.approx(0.5), pytest.approx(stdev(mccs.values())))
    assert row["speedup_batch_1"] == pytest.approx(1.15)
    assert "| 0.5000 ± 0.0816 |" in markdown_table(table, "sst2")
    cells = cells_table(runs, 0.2)
    assert sorted(zip(cells.finetune_seed, cells.pruning_seed, cells.mcc)) == sorted((*k, v) for k, v in mccs.items())
    # each model with the machine that fine-tuned it: here each fine-tuning seed ran on another CPU model
    assert set(zip(cells.finetune_seed, cells.machine)) == {(42, "AMD EPYC (family 25, model 42)"),
                                                            (43, "AMD EPYC (family 25, model 43)")}
    assert machines_line(cells) == ("Fine-tuned on AMD EPYC (family 25, model 42): 2 models; "
                                    "AMD EPYC (family 25, model 43): 2 models.")


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
    stale = render.stale_stages(render.dvc_status())  # marked in the docs where the committed run is behind the code
    assert results == render.generated_block(render.sources(), stale=stale).strip()
    headline = block_between(render.README.read_text(), render.HEADLINE_START, render.HEADLINE_END)
    assert headline == render.readme_headline().strip()


def test_results_from_stages_behind_the_code_or_params_are_marked_and_no_headline_is_rendered_from_them(
        monkeypatch, tmp_path):
    monkeypatch.chdir(ROOT)
    status = {  # as `dvc status --json` reports it
        "split": [{"changed deps": {"src/mcap/data.py": "modified", "params.yaml": {"data": "modified"}}}],
        "pattern_cnn": [{"changed deps": {"models/cache_only": "deleted"}}, {"changed outs": {"models/x": "not in cache"}}],
        "report": ["changed command"],
        "explain@a": [{"changed outs": {"reports/explain/models/a/html": "not in cache"}}],
        "explain_report": [{"changed deps": {"reports/explain/models": "modified"}}],  # only its absent html differs
    }
    assert render.stale_stages(status) == {"split": ["src/mcap/data.py", "params.yaml: data"], "report": ["its command"]}
    status["explain_report"] = [{"changed deps": {"reports/explain/model": "modified"}}]  # a prefix, not a folder above
    assert render.stale_stages(status)["explain_report"] == ["reports/explain/model"]
    del status["explain_report"]
    monkeypatch.setattr(render, "dvc_status", lambda: status)
    monkeypatch.setattr(render, "RESULTS", tmp_path / "results.md")
    monkeypatch.setattr(render, "headline_source", lambda: Path("."))  # no kept run: the headline is the workspace's
    monkeypatch.setattr(render, "README", tmp_path / "README.md")
    monkeypatch.setattr(sys, "argv", ["render.py", "readme"])
    with pytest.raises(SystemExit, match=r"2 stage\(s\) are not up to date .* split \(src/mcap/data.py"):
        render.main()
    assert not (tmp_path / "README.md").exists()
    monkeypatch.setattr(sys, "argv", ["render.py", "results"])
    (tmp_path / "results.md").write_text(f"{render.START}\n{render.END}\n")
    render.main()
    marked = (tmp_path / "results.md").read_text()
    assert "**The reports below are behind the code:** 2 stage(s)" in marked and "`split` (src/mcap/data.py" in marked
    assert marked.index("## The head-ranking comparison") < marked.index("behind the code") < marked.rindex("## Table I")
    fresh = tmp_path / "models" / "finetuned"  # a fresh clone's output folder: only the .gitignore DVC committed
    fresh.mkdir(parents=True)
    (fresh / ".gitignore").write_text("/seed-42\n")
    monkeypatch.setattr(render, "dvc_status", lambda: {  # a fresh clone: files not in its cache, folders without them
        "pattern_cnn": status["pattern_cnn"], "explain": [{"changed deps": {str(fresh): "modified"}}]})
    render.main()
    rendered = (tmp_path / "results.md").read_text()
    assert "Table I" in rendered and "behind the code" not in rendered  # missing cached files are no staleness


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
    agreement = tmp_path / "agreement.json"  # the ranking stage's, per task and strategy
    agreement.write_text(json.dumps({"a": {"mcap": 0.8, "head_sep": 0.1}, "b": {"head_sep": 0.2}}))
    table = render.controller_markdown(path, agreement.name)
    assert "| 2.0000 → 0.5000 (0.25×) | ≤ 0.80× |" in table
    assert "controller seeds 42, 43 (per training task) | 1.00 | ≥ 0.80 |" in table
    assert "a vs b 0.80" in table and "first pruning seed) | a 0.80 |" in table
    assert "| – (no ranking stage ran) |" in render.controller_markdown(path, "no.json")


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


def test_the_headline_shows_each_ratio_with_the_paired_differences_and_their_readings():

    table = pd.DataFrame([
        ("sst2", "head_random", "6. Random head pruning", 6, 0.40, 0.05, 1.20, 0.5),
        ("sst2", "none", "8. BERT fine-tuning (unpruned)", 3, 0.60, 0.01, 1.00, 0.5),
        ("sst2", "head_gradient", "6b. HeadImp: gradient", 3, 0.50, float("nan"), 1.21, 0.5),
        ("sst2", "mcap", "7. MCAP", 9, 0.55, 0.02, 1.22, 0.2),
        ("cola", "mcap", "7. MCAP", 9, 0.123, 0.02, 1.22, 0.5),
    ], columns=["task", "strategy", "label", "seeds", "mcc", "mcc_std", "speedup_batch_32", "ratio"])
    table["speedup_batch_1"] = 1.0
    paired = pd.DataFrame([
        ("sst2", 0.5, "head_random", "head_gradient", 3, -0.10, -0.15, -0.05),
        ("sst2", 0.5, "none", "head_gradient", 3, 0.10, -0.01, 0.20),
        ("sst2", 0.5, "none", "head_random", 3, 0.20, 0.10, 0.30),
        ("sst2", 0.2, "mcap", "head_gradient", 1, 0.02, float("nan"), float("nan")),
    ], columns=["task", "ratio", "strategy", "reference", "n_pairs", "mean_delta", "ci_low", "ci_high"])
    params = Params.load(ROOT / "params.yaml")
    lines = render.headline_markdown(table, paired, params).splitlines()
    assert lines[0] == ("| Ratio | Strategy | Test MCC | Models | ΔMCC vs `head_gradient` [95%] | "
                        "ΔMCC vs `head_random` [95%] | Speed-up (batch 32) |")
    assert lines[2] == "| 0.2 | 7. MCAP | 0.550 ± 0.020 | 9 | +0.020 no interval | – | 1.22× |"
    assert lines[3] == ("| 0.5 | 6. Random head pruning | 0.400 ± 0.050 | 6 | -0.100 [-0.150, -0.050] worse | "
                        "reference | 1.20× |")  # in Table I's order
    assert lines[4] == "| 0.5 | 6b. HeadImp: gradient | 0.500 | 3 | reference | – | 1.21× |"
    assert lines[5] == ("| 0.5 | 8. BERT fine-tuning (unpruned) | 0.600 ± 0.010 | 3 | +0.100 [-0.010, +0.200] within "
                        "noise | +0.200 [+0.100, +0.300] better | 1.00× |")
    assert len(lines) == 8 and "0.123" not in "\n".join(lines)  # no CoLA row
    assert f"fine-tuning seeds {params.seeds}" in lines[-1] and "every test sentence" in lines[-1]


def lock_with(stages: dict) -> str:
    return yaml.safe_dump({"schema": "2.0", "stages": stages})


def git(*args: str) -> str:
    return subprocess.run(["git", *args], capture_output=True, text=True, check=True).stdout.strip()


def committed_repo(path: Path) -> str:
    """``path`` as a git repository whose every file is committed; returns the commit."""
    git("init", "-q", str(path))
    git("-C", str(path), "add", "-A")
    git("-C", str(path), "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "run")
    return git("-C", str(path), "rev-parse", "HEAD")


def test_a_kept_run_keeps_its_params_lock_the_reports_its_lock_lists_and_its_commit_and_comes_back(
        tmp_path, monkeypatch):
    import keep

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(keep, "dvc_status", dict)
    monkeypatch.setattr(keep, "pipeline_stages", lambda: {"finetune@x", "report"})  # what seeds: [42] expands to
    (tmp_path / "params.yaml").write_text("seeds: [42]\n")
    (tmp_path / "src").mkdir()
    (tmp_path / "src/stage.py").write_text("x = 1\n")
    (tmp_path / "reports/cells/sst2").mkdir(parents=True)
    (tmp_path / "reports/cells/sst2/seed-42.json").write_text("{}")
    (tmp_path / "reports/table1.md").write_text("table")
    (tmp_path / "reports/unlisted.md").write_text("not an output of the run")
    (tmp_path / "dvc.lock").write_text(lock_with({
        "finetune@x": {"outs": [{"path": "reports/cells/sst2"}, {"path": "models/finetuned/x"}]},
        "report": {"outs": [{"path": "reports/table1.md"}]},
        "finetune@y": {"outs": [{"path": "reports/cells/cola"}]}}))  # another run's stage: not this pipeline's
    (tmp_path / "reports/cells/cola").mkdir()
    (tmp_path / "reports/cells/cola/seed-42.json").write_text("{}")
    commit = committed_repo(tmp_path)
    folder = keep.keep("grid")
    assert sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()) == [
        "dvc.lock", "params.yaml", "provenance.json", "reports/cells/sst2/seed-42.json", "reports/table1.md"]
    assert keep.kept_commit(folder) == commit
    assert list(keep.locked_stages(folder / "dvc.lock")) == ["finetune@x", "report"]
    (tmp_path / "params.yaml").write_text("seeds: [7]\n")  # the workspace moves on to another run
    (tmp_path / "reports/cells/sst2/seed-7.json").write_text("{}")
    keep.restore("grid")
    assert (tmp_path / "params.yaml").read_text() == "seeds: [7]\n"  # the next chunk's exp run sets the params
    assert sorted(p.name for p in (tmp_path / "reports/cells/sst2").iterdir()) == ["seed-42.json"]
    with pytest.raises(SystemExit, match="no run kept as 'other'"):
        keep.restore("other")
    (tmp_path / "src/stage.py").write_text("x = 2\n")
    with pytest.raises(SystemExit, match="uncommitted changes \\(src/stage.py\\)"):
        keep.keep("grid")  # no commit holds the code that made it
    monkeypatch.setattr(keep, "dvc_status", lambda: {"report": ["changed command"]})
    with pytest.raises(SystemExit, match="1 stage\\(s\\) are behind"):
        keep.keep("grid")
    assert keep.kept_commit(folder) == commit  # refused: the kept run is untouched


def test_a_kept_run_made_with_other_code_is_marked_with_its_commit(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "src/pkg").mkdir(parents=True)
    for path in ("src/a.py", "src/pkg/b.py", "src/unused.py"):
        (tmp_path / path).write_text("x = 1\n")
    deps = [{"path": "src/a.py", "md5": "1"}, {"path": "src/pkg", "md5": "2.dir"}, {"path": "data/x", "md5": "3"}]
    kept = tmp_path / "reports/runs/comparison"
    kept.mkdir(parents=True)
    (kept / "dvc.lock").write_text(lock_with({"prune": {"deps": deps}}))
    (tmp_path / "dvc.lock").write_text(lock_with({"prune": {"deps": [{"path": "src/pkg", "md5": "0.dir"}]}}))
    commit = committed_repo(tmp_path)  # the workspace's own lock, behind the code, plays no part
    (kept / "provenance.json").write_text(f'{{"commit": "{commit}"}}')
    (tmp_path / "src/unused.py").write_text("x = 2\n")  # no stage of the run depends on it
    assert render.stale_code(kept / "dvc.lock", commit) == [] and render.headline_source(kept) == kept
    assert render.code_note(kept) == f" Made by the code of commit {commit[:10]}, the stages' code of this commit too."
    (tmp_path / "src/a.py").write_text("x = 2\n")
    (tmp_path / "src/pkg/b.py").write_text("x = 2\n")
    assert render.stale_code(kept / "dvc.lock", commit) == ["src/a.py", "src/pkg"]  # data is not code
    assert f"commit {commit[:10]}; the code of its stages has changed since (`src/a.py`, `src/pkg`)" in render.code_note(kept)
    assert render.stale_code(kept / "dvc.lock", None) == ["src/a.py", "src/pkg"]  # no commit: nothing traceable
    assert render.headline_source(tmp_path / "none") == Path(".")  # nothing kept: the workspace's run
    assert render.code_note(Path(".")) == ""
    (kept / "reports").mkdir()
    (kept / "reports/table1.md").write_text("# Table I — our measurements\n\n## sst2\n\nkept cells")
    (tmp_path / "reports/table1.md").write_text("# Table I — our measurements\n\ndefault cells")
    monkeypatch.setattr(render, "COMPARISON_RUN", kept.relative_to(tmp_path))
    monkeypatch.setattr(render, "SOURCES", [Path("reports/table1.md")])
    block = render.generated_block(render.sources(), target=Path("docs/results.md"))
    assert block.index("## The head-ranking comparison") < block.index("### sst2\n\nkept cells") < block.index(
        "## Table I — our measurements\n\ndefault cells")  # the kept comparison first, one level further down
    assert f"Made by the code of commit {commit[:10]}." in block and "changed since" not in block  # README's to say
    monkeypatch.setattr(render, "dvc_status", lambda: {"report": ["changed command"]})  # the default run is stale:
    monkeypatch.setattr(render, "README", tmp_path / "README.md")  # a kept run's headline still renders, marked
    monkeypatch.setattr(render, "headline_markdown", lambda *args: "the headline")
    monkeypatch.setattr(render, "coverage_note", lambda params: "")  # the profile's grid: its own test
    monkeypatch.setattr(sys, "argv", ["render.py", "readme"])
    (tmp_path / "README.md").write_text(f"{render.HEADLINE_START}\n{render.HEADLINE_END}\n")
    (kept / "params.yaml").write_text((ROOT / "params.yaml").read_text())
    for table in (render.TABLE, render.PAIRED):
        (kept / table).parent.mkdir(parents=True, exist_ok=True)
        (kept / table).write_text("task\nsst2\n")
    render.main()
    assert f"the headline **Made by the code of commit {commit[:10]}; the code of its stages has changed since" in (
        tmp_path / "README.md").read_text()


def test_the_readme_shows_the_kept_structured_runs_fastest_model_per_mode_or_says_it_has_none(tmp_path, monkeypatch):
    monkeypatch.setattr(render, "code_note", lambda run: "")
    assert "has not been run on this code yet" in render.deployable_markdown(tmp_path)
    columns = {"task": "sst2", "strategy": "structured_gradient", "mode": "after", "precision": "int8", "mac_ratio": 0.4,
               "n": 6, "mcc_mean": 0.7, "mcc_std": 0.01, "mcc_delta": -0.004, "mcc_delta_low": -0.012,
               "mcc_delta_high": 0.003, "speedup_torch_b32": None, "speedup_onnx_b32": 2.6, "speedup_torch_b1": None,
               "speedup_onnx_b1": 1.9}
    (tmp_path / "reports" / "structured").mkdir(parents=True)
    pd.DataFrame([columns]).to_csv(tmp_path / "reports" / "structured" / "sst2.csv", index=False)
    (tmp_path / "dvc.lock").write_text("schema: '2.0'\n")
    text = render.deployable_markdown(tmp_path)
    assert "| sst2 | after, retraining-free | INT8 | structured_gradient | 40% | 0.7000 | -0.4 [-1.2, +0.3] | 2.60× | 1.90× |" in text


def test_the_headline_names_what_of_the_profiles_grid_a_kept_run_has_not_reached(tmp_path):
    profile = tmp_path / "grid.args"
    profile.write_text("# a grid\n-S prune.ratios=[0.2,0.5]\n-S seeds=[42,43,44]\n-S prune.seeds=[42,43,44]\n")

    def kept(ratios, seeds):
        return Params({**RAW_PARAMS, "seeds": seeds, "prune": {**RAW_PARAMS["prune"], "ratios": ratios,
                                                                "seeds": [42, 43, 44]}})

    assert render.coverage_note(kept([0.2], [42, 43, 44]), profile) == (
        " Of `" + profile.as_posix() + "`'s grid, not run yet: ratios [0.5].")
    assert "fine-tuning seeds [43, 44]" in render.coverage_note(kept([0.2, 0.5], [42]), profile)
    assert render.coverage_note(kept([0.2, 0.5], [42, 43, 44]), profile) == ""
