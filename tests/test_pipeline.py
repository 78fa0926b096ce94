"""The real DVC pipeline, end to end, in a temporary git repository on a tiny profile.

Tiny random BERT (2 layers x 4 heads), 64 train / 64 eval sentences per task, one epoch, every
strategy of params.yaml on SST-2 plus the transfer task. Checks `dvc metrics show`, Table I, that
changing the pruning ratio reruns what depends on it but never the split, and that two
fine-tuning seeds give mean ± std.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from conftest import save_tiny_bert, write_tiny_glue, write_tiny_task

ROOT = Path(__file__).resolve().parents[1]
PROJECT_FILES = ["dvc.yaml", "params.yaml", ".dvcignore", "stages", "src"]


def run(command: list[str], cwd: Path) -> str:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "GIT_AUTHOR_NAME": "test", "GIT_AUTHOR_EMAIL": "test@example.com",
           "GIT_COMMITTER_NAME": "test", "GIT_COMMITTER_EMAIL": "test@example.com", "DVC_NO_ANALYTICS": "1"}
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    assert result.returncode == 0, f"{' '.join(command)} failed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    return result.stdout + result.stderr


def tiny_params(model_dir: Path, glue_dir: Path, subj_dir: Path) -> dict:
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["tasks"] = ["sst2"]  # one Table I task (CoLA is the same code path) keeps the suite fast
    params["mcap"]["train_tasks"] = ["sst2"]
    params["model"]["name_or_path"] = str(model_dir)
    params["data"].update(glue_dir=str(glue_dir), extra_tasks={"subj": str(subj_dir)}, max_train_examples=64,
                          max_eval_examples=64)
    params["train"].update(epochs=1, learning_rates=[1e-3], max_seq_len=32)
    params["prune"].update(importance_examples=16, gradient_probe_steps=3, imp_retrain_steps=2)
    params["evaluate"].update(warmup=1, repetitions=3, flops_seq_len=32)
    params["post_prune"].update(mac_ratios=[0.4], examples=16, learned=["structured_mcap"])
    params["ranking"].update(ratios=[0.25, 0.5], seeds=[42, 43], train_examples=32)
    params["explain"].update(lime_samples=40, shap_max_evals=20, faithfulness_examples=2, faithfulness_lime_samples=40,
                             faithfulness_shap_max_evals=20, texts=["", "good film"])
    params["mcap"].update(map_examples=16, map_length=16, cnn_maps=100, cnn_epochs=2, k=32, passes=1, cnn_instances=2,
                          seeds=[42, 43], neuron_group_size=16)
    return params


@pytest.fixture(scope="module")
def pipeline_repo(tmp_path_factory):
    base = tmp_path_factory.mktemp("pipeline")
    repo = base / "repo"
    repo.mkdir()
    for name in PROJECT_FILES:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, repo / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(source, repo / name)
    params = tiny_params(save_tiny_bert(base / "tiny-bert"), write_tiny_glue(base / "glue"), write_tiny_task(base / "SUBJ"))
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run(["git", "init", "-q"], repo)
    run(["dvc", "init", "-q"], repo)
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-qm", "tiny profile"], repo)
    run(["dvc", "repro"], repo)
    return repo, params


def metrics_by_file(repo: Path) -> dict[str, dict]:
    """What `dvc metrics show` lists, by file."""
    shown = json.loads(run(["dvc", "metrics", "show", "--json"], repo))
    (workspace,) = shown.values()
    return {path: entry["data"] for path, entry in workspace["data"].items()}


def records(repo: Path) -> dict[str, dict]:
    """The JSON records the stages write, read on first use by their path in ``repo``."""

    class Records(dict):
        def __missing__(self, path: str) -> dict:
            return json.loads((repo / path).read_text())

    return Records()


def all_pairs(params: dict) -> list[tuple[str, str]]:
    learned = params["mcap"]["strategies"]
    return [(t, s) for t in params["tasks"] for s in params["prune"]["strategies"] + learned] + [
        (t, s) for t in params["transfer"]["tasks"] for s in params["transfer"]["strategies"] + learned]


def test_repro_reports_quality_latency_and_flops_for_every_task_and_strategy(pipeline_repo):
    repo, params = pipeline_repo
    metrics = records(repo)
    assert len(all_pairs(params)) == 12 + 5
    for task, strategy in all_pairs(params):
        benchmark = metrics[f"reports/evaluate/{task}-{strategy}/seed-42.json"]
        assert set(benchmark["test"]) == {"mcc", "accuracy", "loss"}
        assert benchmark["latency_ms"]["batch_1"]["median"] > 0
        assert benchmark["speedup"]["batch_32"]["median"] > 0
        assert benchmark["flops"]["mean_length"]["dense"] > 0
        assert (repo / f"reports/finetune/{task}-{strategy}/seed-42/metrics.json").is_file()
    cells = pd.read_csv(repo / "reports" / "comparison" / "cells.csv")
    assert sorted(zip(cells.task, cells.strategy)) == sorted(all_pairs(params))
    assert set(cells.finetune_seed) == {42} and set(cells.pruning_seed) == {params["seed"]}
    paired = pd.read_csv(repo / "reports" / "comparison" / "paired.csv")
    for reference in ("head_gradient", "head_random"):  # both references run on every task here
        against = paired[paired.reference == reference]
        assert sorted(zip(against.task, against.strategy)) == sorted(p for p in all_pairs(params) if p[1] != reference)
    assert (paired.n_pairs == 1).all() and paired.ci_low.isna().all()  # one fine-tuning seed: no interval
    assert "| no interval |" in (repo / "reports" / "table1.md").read_text()


def test_dvc_metrics_show_the_summary_and_the_data_and_cnn_checks_only(pipeline_repo):
    """`dvc metrics diff` between branches stays one screen: MCC, loss and speed-up per task and strategy."""
    repo, params = pipeline_repo
    metrics = metrics_by_file(repo)
    assert set(metrics) == {"reports/summary.json", "reports/split/leakage.json", "reports/mcap/cnn/metrics.json"}
    assert {(task, strategy) for task, by_strategy in metrics["reports/summary.json"].items()
            for strategy in by_strategy} == set(all_pairs(params))
    assert set(metrics["reports/summary.json"]["sst2"]["mcap"]) == {"mcc", "loss", "speedup_b32"}


def test_head_strategies_shrink_the_model_and_unstructured_ones_sparsify_it(pipeline_repo):
    repo, params = pipeline_repo
    metrics = records(repo)
    for task in params["tasks"]:
        unpruned = metrics[f"reports/evaluate/{task}-none/seed-42.json"]
        for strategy in ("head_sep", "head_entropy", "head_random", "head_gradient", "mcap", "mcap_iterative"):
            pruned = metrics[f"reports/evaluate/{task}-{strategy}/seed-42.json"]
            assert pruned["heads"] == 8 - 1  # floor(0.2 x 8)
            assert pruned["flops"]["mean_length"]["dense"] < unpruned["flops"]["mean_length"]["dense"]
        for strategy in ("imp", "l1_unstructured", "random_unstructured"):
            pruned = metrics[f"reports/evaluate/{task}-{strategy}/seed-42.json"]
            assert pruned["flops"]["length_32"]["nonzero"] < pruned["flops"]["length_32"]["dense"]


def test_structured_pruning_before_and_after_fine_tuning_reaches_the_structured_report(pipeline_repo):
    repo, _params = pipeline_repo
    metrics = records(repo)
    unpruned = metrics["reports/evaluate/sst2-none/seed-42.json"]
    before = metrics["reports/evaluate/sst2-structured_gradient/seed-42.json"]
    assert before["ffn_neurons"] < unpruned["ffn_neurons"] == 2 * 64
    assert before["flops"]["length_32"]["dense"] < unpruned["flops"]["length_32"]["dense"]
    record = json.loads((repo / "reports" / "prune" / "sst2-structured_gradient" / "heads.json").read_text())
    assert record["kind"] == "structured" and 0.15 < record["removed_mac_fraction"] <= 0.2
    assert metrics["reports/post_prune/sst2/seed-42.json"]["fisher_examples"] > 0  # a metrics file of the stage
    after = json.loads((repo / "reports" / "post_prune" / "sst2" / "seed-42.json").read_text())  # with its list
    (budget,) = after["budgets"]
    assert budget["mac_ratio"] == 0.4 and budget["onnx_max_abs_diff"] < 1e-4
    assert (repo / "models" / "post_pruned" / "sst2" / "seed-42" / "macs-removed-0.4.onnx").is_file()
    table = pd.read_csv(repo / "reports" / "structured.csv")
    assert set(zip(table["strategy"], table["mode"].fillna(""))) >= {
        ("none", ""), ("head_gradient", "before"), ("structured_gradient", "before"), ("structured_gradient", "after"),
        ("structured_mcap", "before"), ("structured_mcap", "after")}
    assert "imp" not in set(table["strategy"])  # unstructured zeros are no dense speed-up
    row = table[(table["mode"] == "after") & (table["strategy"] == "structured_gradient")].iloc[0]  # 6 significant digits
    assert row["mcc_delta"] == pytest.approx(budget["test"]["mcc"] - after["unpruned"]["test"]["mcc"], rel=1e-5, abs=1e-6)
    assert row["speedup_onnx_b32"] == pytest.approx(budget["speedup"]["onnx_batch_32"]["median"], rel=1e-5)
    assert row["mcc_without_rearrangement_mean"] == pytest.approx(budget["test_without_rearrangement"]["mcc"],
                                                                rel=1e-5, abs=1e-6)  # Fisher: masks rearranged
    deployed = metrics["reports/deploy/sst2-structured_gradient/seed-42.json"]  # deploy.strategies' default
    assert deployed["onnx_max_abs_diff"] < 1e-4 and deployed["speedup"]["onnx_batch_32"]["median"] > 0
    assert (repo / "models" / "deployed" / "sst2-structured_gradient" / "seed-42" / "model.onnx").is_file()
    before_row = table[(table["strategy"] == "structured_gradient") & (table["mode"] == "before")].iloc[0]
    assert before_row["speedup_onnx_b32"] == pytest.approx(deployed["speedup"]["onnx_batch_32"]["median"], rel=1e-5)
    assert (table[table["strategy"] == "head_gradient"]["speedup_onnx_b32"]).isna().all()  # not deployed
    learned = json.loads((repo / "reports" / "post_prune" / "sst2-structured_mcap" / "seed-42.json").read_text())
    assert learned["ranking"] == "meta-controller" and learned["budgets"][0]["onnx_max_abs_diff"] < 1e-4
    assert learned["unpruned"]["test"] == after["unpruned"]["test"]  # the same fine-tuned model, ranked by δ instead
    by_budget = json.loads((repo / "reports" / "structured_mcap" / "delta_by_budget" / "sst2.json").read_text())
    assert list(by_budget["by_budget"]) == ["0.4"] and by_budget["seed"] == 42  # a controller per budget
    budgets = json.loads((repo / "reports" / "structured_mcap" / "controller_budgets" / "diagnostics.json").read_text())
    removed = budgets["by_budget"]["0.4"]["removed"]["sst2"]  # what that controller's scores remove
    assert 0.3 < removed["removed_mac_fraction"] <= 0.4
    assert removed["removed_mac_fraction"] == pytest.approx(learned["budgets"][0]["removed_mac_fraction"])
    mcap_before = json.loads((repo / "reports" / "prune" / "sst2-structured_mcap" / "heads.json").read_text())
    assert mcap_before["kind"] == "structured" and 0.1 < mcap_before["removed_mac_fraction"] <= 0.2
    assert metrics["reports/deploy/sst2-structured_mcap/seed-42.json"]["onnx_max_abs_diff"] < 1e-4
    assert "## Targets" in (repo / "reports" / "structured.md").read_text()
    assert (repo / "reports" / "structured.png").stat().st_size > 0


def table_rows(table: str, heading: str) -> list[str]:
    section = table.split(f"## {heading}\n", 1)[1].split("\n## ", 1)[0]
    lines = section.splitlines()
    return [line for line, below in zip(lines, lines[1:] + [""]) if line.startswith("| ") and not below.startswith("|---")]


def test_table1_has_a_row_per_strategy_and_the_papers_table(pipeline_repo):
    repo, params = pipeline_repo
    table = (repo / "reports" / "table1.md").read_text()
    for task in params["tasks"]:
        rows = table_rows(table, task)
        assert len(rows) == len(params["prune"]["strategies"] + params["mcap"]["strategies"]) == 12
        assert any(row.startswith("| 7. MCAP |") for row in rows)
        assert any(row.startswith("| 7b. MCAP, iterative (not in paper) |") for row in rows)
    transfer_rows = table_rows(table, "subj — transfer")
    assert [row.split(" |")[0] for row in transfer_rows] == [
        "| 6. Random head pruning", "| 6b. HeadImp: gradient (Michel et al.; not in paper)", "| 7. MCAP",
        "| 7b. MCAP, iterative (not in paper)",
        "| 7c. Structured MCAP: heads + FFN neuron groups by meta-controller δ, to a MAC budget (not in paper)"]
    assert "The paper's Table I (their numbers" in table
    assert (repo / "reports" / "prune" / "sst2-head_sep" / "heads.png").stat().st_size > 0


def test_mcap_stages_write_delta_for_every_task_and_cnn_metrics(pipeline_repo):
    repo, _params = pipeline_repo
    for task, folder in (("sst2", "delta"), ("subj", "delta_transfer")):  # subj: inferred by transfer_scores
        delta = json.loads((repo / "reports" / "mcap" / folder / f"{task}.json").read_text())
        assert set(delta["delta_by_seed"]) == {"42", "43"}  # one per mcap.seeds
        assert len(delta["delta_by_seed"]["42"]) == 2 and len(delta["delta_by_seed"]["42"][0]) == 4
        assert delta["seen_in_meta_training"] == (task != "subj")
    diagnostics = json.loads((repo / "reports" / "mcap" / "controller" / "diagnostics.json").read_text())
    # the controller stage sees the tasks of `tasks` only (here one, so no pair of tasks), never the transfer task
    assert set(diagnostics["seed_spearman"]["sst2"]) == {"42~43"} and diagnostics["task_spearman"] == {}
    assert "gradient_spearman" not in diagnostics and diagnostics["objective_start"] > 0  # the ranking stage's
    assert 0 <= records(repo)["reports/mcap/cnn/metrics.json"]["heldout_accuracy"] <= 1
    # mcap_iterative: 0.2 of 8 heads in steps of 0.1 = a step removing 0, then one removing 1 (subj: steps replayed)
    for task, folder in (("sst2", "delta"), ("subj", "delta_transfer")):
        scores = json.loads((repo / "reports" / "mcap_iterative" / folder / f"{task}.json").read_text())["delta_by_seed"]
        assert set(scores) == {"42", "43"}
        assert sorted(int(score) for row in scores["42"] for score in row) == [1] + [2] * 7
    iterative = json.loads((repo / "reports" / "mcap_iterative" / "controller" / "diagnostics.json").read_text())
    assert [step["ratio"] for step in iterative["steps"]] == [0.1, 0.2] and iterative["task_spearman"] == {}
    assert (repo / "reports" / "mcap" / "attention" / "subj.png").is_file()


def test_explanations_for_every_strategy_with_faithfulness_in_the_metrics(pipeline_repo):
    repo, params = pipeline_repo
    lime = (repo / "reports" / "explain" / "lime_table.md").read_text()
    assert len(table_rows(lime, "sst2")) == 12
    assert "U1 (empty text)" in lime  # the empty extra text is skipped and reported
    metrics = records(repo)
    for strategy in params["prune"]["strategies"] + params["mcap"]["strategies"]:
        model_metrics = metrics[f"reports/explain/models/sst2-{strategy}/metrics.json"]
        assert {"comprehensiveness", "sufficiency"} <= set(model_metrics["shap"])
        assert (repo / "reports" / "explain" / "models" / f"sst2-{strategy}" / "png" / "shap_T2.png").is_file()
    assert "mcap" in metrics["reports/explain/summary.json"]["sst2"]
    assert "Most faithful" in (repo / "reports" / "explain" / "faithfulness.md").read_text()


def test_the_ranking_stage_scores_every_head_strategy_per_ratio_and_seed(pipeline_repo):
    repo, params = pipeline_repo
    points = pd.read_csv(repo / "reports" / "ranking" / "ranking.csv")
    head_strategies = {"head_sep", "head_entropy", "head_random", "head_gradient", "mcap", "mcap_iterative"}
    assert set(points["strategy"]) == head_strategies | {"none"}
    assert set(points[points["strategy"] == "head_random"]["seed"]) == set(params["ranking"]["seeds"])
    assert set(points[points["strategy"] != "none"]["ratio"]) == set(params["ranking"]["ratios"])
    assert (repo / "reports" / "ranking" / "ranking.png").stat().st_size > 0
    agreement = json.loads((repo / "reports" / "ranking" / "agreement.json").read_text())
    assert set(agreement) == {"sst2"} and set(agreement["sst2"]) == head_strategies - {"head_gradient"}
    assert all(-1 <= value <= 1 for value in agreement["sst2"].values())


def test_changing_the_ratio_reruns_pruning_but_never_the_split_and_seeds_give_a_spread(pipeline_repo):
    repo, _params = pipeline_repo
    # A subset of strategies keeps this fast; what matters is which stages the ratio reaches.
    output = run(["dvc", "exp", "run", "-S", "prune.ratio=0.5", "-S", "prune.strategies=[none,head_random]",
                  "-S", "mcap.strategies=[mcap]", "-S", "transfer.strategies=[]", "-S", "seeds=[42,7]",
                  "-S", "deploy.strategies=[]"], repo)  # deploy: among the pruned ones
    for stage in ("meta_controller", "prune_mcap@sst2-mcap", "transfer_scores@subj-mcap", "prune_transfer_mcap@subj-mcap",
                  "finetune_mcap@sst2-mcap-7", "evaluate_transfer_mcap@subj-mcap-7", "report", "explain_report"):
        assert f"Running stage '{stage}'" in output
    # The unpruned model does not depend on the ratio: its pruning reruns but writes the same
    # model, so its fine-tuning is not repeated.
    for stage in ("split", "attention_maps", "pattern_cnn", "finetune@sst2-none-42",
                  "meta_controller_budgets@structured_mcap"):  # the after-fine-tuning controllers: trained per budget
        assert f"Running stage '{stage}'" not in output
    mcap_row = next(row for row in table_rows((repo / "reports" / "table1.md").read_text(), "sst2")
                    if row.startswith("| 7. MCAP |"))
    assert mcap_row.count(" ± ") >= 2 + 3  # latencies, then MCC, loss and accuracy over the two seeds
    paired = pd.read_csv(repo / "reports" / "comparison" / "paired.csv")
    assert set(paired.reference) == {"head_random"} and set(paired.ratio) == {0.5}
    assert set(paired.strategy) == {"none", "mcap"} and (paired.n_pairs == 2).all()
    assert (paired.ci_low <= paired.mean_delta).all() and (paired.mean_delta <= paired.ci_high).all()



def test_a_strategy_in_the_wrong_list_is_named_before_anything_runs(pipeline_repo):
    """A learned strategy in prune.strategies would read scores its stage does not depend on; post_prune.learned takes
    the structured controllers only."""
    repo, _params = pipeline_repo
    result = subprocess.run([sys.executable, "stages/prune.py", "--task", "sst2", "--strategy", "mcap"], cwd=repo,
                            capture_output=True, text=True, check=False)
    assert result.returncode == 2
    assert "strategy 'mcap' prunes with a meta-controller's scores: list it in 'mcap.strategies'" in result.stderr
    result = subprocess.run([sys.executable, "stages/prune.py", "--task", "sst2", "--strategy", "head_random", "--learned"],
                            cwd=repo, capture_output=True, text=True, check=False)
    assert result.returncode == 2 and "list it in 'prune.strategies'" in result.stderr
    result = subprocess.run([sys.executable, "stages/meta_controller_budgets.py", "--strategy", "mcap"], cwd=repo,
                            capture_output=True, text=True, check=False)  # post_prune.learned: a head-only controller
    assert result.returncode == 2 and "'post_prune.learned' lists 'mcap'" in result.stderr
    assert not (repo / "reports" / "mcap" / "delta_by_budget").exists()
