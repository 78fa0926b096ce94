"""The real DVC pipeline, end to end, in a temporary git repository on a tiny profile.

Tiny random BERT (2 layers x 4 heads), 64 train / 64 eval sentences per task, one epoch, every registered
strategy on SST-2 and on the transfer task SUBJ, two pruning seeds, and every extension of profiles/full.args.
Checks the grid's cells and paired comparison, `dvc metrics show`, Table I, that changing the ratios reruns what
depends on them but never the split, that an edit to one strategy refits no other strategy, and that bad grids are
refused with the key named.
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
from mcap.devices import pick_device, precision
from mcap.post_prune_files import layout_key
from mcap.strategies import known_strategies, pruning_seeds

ROOT = Path(__file__).resolve().parents[1]
PROJECT_FILES = ["dvc.yaml", "params.yaml", ".dvcignore", "stages", "src"]


def run(command: list[str], cwd: Path) -> str:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "GIT_AUTHOR_NAME": "test", "GIT_AUTHOR_EMAIL": "test@example.com",
           "GIT_COMMITTER_NAME": "test", "GIT_COMMITTER_EMAIL": "test@example.com", "DVC_NO_ANALYTICS": "1"}
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    assert result.returncode == 0, f"{' '.join(command)} failed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    return result.stdout + result.stderr


LEARNED_HEADS = ["mcap", "mcap_iterative", "mcap_joint"]  # the head strategies whose scores a controller learned


def tiny_params(model_dir: Path, glue_dir: Path, subj_dir: Path) -> dict:
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["tasks"] = ["sst2", "subj"]  # one Table I task (CoLA is the same code path) and one transfer task
    params["strategies"] = known_strategies()
    params["mcap"]["train_tasks"] = ["sst2"]
    params["model"]["name_or_path"] = str(model_dir)
    params["data"].update(glue_dir=str(glue_dir), extra_tasks={"subj": str(subj_dir)}, max_train_examples=64,
                          max_validation_examples=64, max_test_examples=64, task_train_examples={})
    params["train"].update(epochs=1, learning_rates=[1e-3], max_seq_len=32)
    params["prune"].update(seeds=[42, 43], importance_examples=16, gradient_probe_steps=3, imp_retrain_steps=2)
    params["evaluate"].update(warmup=1, repetitions=3, flops_seq_len=32)
    params["post_prune"].update(tasks=["sst2"], mac_ratios=[0.4], examples=16, learned=["structured_mcap"],
                                recoveries=["distill"], recovery_mac_ratios=[0.4])
    params["deploy"]["strategies"] = ["structured_gradient", "structured_mcap"]
    params["ranking"].update(tasks=["sst2"], ratios=[0.25, 0.5], seeds=[42, 43], train_examples=32)
    params["explain"].update(lime_samples=40, shap_max_evals=20, faithfulness_examples=2, faithfulness_lime_samples=40,
                             faithfulness_shap_max_evals=20, texts=["", "good film"])
    params["mcap"].update(strategies=["mcap", "mcap_iterative", "structured_mcap", "mcap_joint"], map_examples=16,
                          map_length=16,
                          pool_examples=32,  # the ranking's probe takes the train sentences after the pool
                          cnn_maps=100, cnn_epochs=2, k=32, passes=1, cnn_instances=2, seeds=[42, 43],
                          neuron_group_size=16)
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


def read(repo: Path, path: str) -> dict:
    return json.loads((repo / path).read_text())


def models(params: dict) -> list[tuple[str, str, int]]:
    """(task, strategy, pruning seed) of every pruned model: a strategy that draws nothing at the first seed only."""
    return [(task, strategy, seed) for task in params["tasks"] for strategy in params["strategies"]
            for seed in pruning_seeds(strategy, params["prune"]["seeds"])]


def test_every_model_of_the_grid_is_fine_tuned_tested_and_timed_once_per_architecture(pipeline_repo):
    repo, params = pipeline_repo
    assert len({(t, s) for t, s, _ in models(params)}) == 2 * 15 and len(models(params)) == 2 * (15 + 10)
    for task, strategy, seed in models(params):
        cell = read(repo, f"reports/cells/{task}/{strategy}-0.2/seed-42.json")
        assert set(cell["runs"]) == {str(p) for p in pruning_seeds(strategy, params["prune"]["seeds"])}
        assert set(cell["runs"][str(seed)]["test"]) == {"mcc", "accuracy", "loss"} and cell["test_sentences"] == 64
        timed = read(repo, f"reports/latency/{task}.json")[f"{strategy}-0.2/seed-{seed}"]
        # quality and time on this machine's device, in one precision (benchmarks/gpu_smoke.sh runs this on a GPU)
        assert (cell["device"], cell["precision"]) == (timed["device"], timed["precision"]) == (
            pick_device().type, precision(pick_device()))
        assert timed["latency_ms"]["batch_1"]["median"] > 0 and timed["speedup"]["batch_32"]["median"] > 0
        assert timed["flops"]["mean_length"]["dense"] > 0
        assert (repo / f"reports/finetune/{task}/{strategy}-0.2/seed-42/pruning-seed-{seed}/metrics.json").is_file()
    cells = pd.read_csv(repo / "reports" / "comparison" / "cells.csv")
    assert sorted(zip(cells.task, cells.strategy, cells.pruning_seed)) == sorted(models(params))
    assert set(cells.finetune_seed) == {42} and set(cells.ratio) == {0.2}
    paired = pd.read_csv(repo / "reports" / "comparison" / "paired.csv")
    for reference in ("head_gradient", "head_random"):  # both references run on every task here
        against = paired[paired.reference == reference]
        assert sorted(zip(against.task, against.strategy)) == sorted(
            (t, s) for t in params["tasks"] for s in params["strategies"] if s != reference)
    assert (paired.n_pairs == 1).all() and paired.ci_low.isna().all()  # one fine-tuning seed: no interval
    assert "| no interval |" in (repo / "reports" / "table1.md").read_text()


def test_dvc_metrics_show_the_summary_and_the_data_and_cnn_checks_only(pipeline_repo):
    """`dvc metrics diff` between branches stays one screen: MCC, loss and speed-up per task and strategy."""
    repo, params = pipeline_repo
    metrics = metrics_by_file(repo)
    assert set(metrics) == {"reports/summary.json", "reports/split/leakage.json", "reports/mcap/cnn/metrics.json"}
    assert {(task, strategy) for task, by_strategy in metrics["reports/summary.json"].items()
            for strategy in by_strategy} == {(t, s) for t in params["tasks"] for s in params["strategies"]}
    assert set(metrics["reports/summary.json"]["sst2"]["mcap"]) == {"mcc", "loss", "speedup_b32"}


def test_head_strategies_shrink_the_model_and_unstructured_ones_sparsify_it(pipeline_repo):
    repo, params = pipeline_repo
    for task in params["tasks"]:
        timed = read(repo, f"reports/latency/{task}.json")
        unpruned = timed["none-0.2/seed-42"]
        for strategy in ("head_sep", "head_entropy", "head_random", "head_gradient", "mcap", "mcap_iterative",
                         "mcap_joint"):
            pruned = timed[f"{strategy}-0.2/seed-42"]
            assert pruned["heads"] == 8 - 1  # floor(0.2 x 8)
            assert pruned["flops"]["mean_length"]["dense"] < unpruned["flops"]["mean_length"]["dense"]
        for strategy in ("imp", "l1_unstructured", "random_unstructured"):
            pruned = timed[f"{strategy}-0.2/seed-42"]
            assert pruned["flops"]["length_32"]["nonzero"] < pruned["flops"]["length_32"]["dense"]
        dropped = timed["layer_drop-0.2/seed-42"]  # 0.2 of 2 layers drops none: timed as the unpruned model
        assert dropped["heads"] == 8 and dropped["flops"] == unpruned["flops"]
        assert timed["head_random-0.2/seed-42"] != timed["head_random-0.2/seed-43"]  # another draw, timed apart


def test_structured_pruning_before_and_after_fine_tuning_reaches_the_structured_report(pipeline_repo):
    repo, params = pipeline_repo
    timed = read(repo, "reports/latency/sst2.json")
    unpruned, before = timed["none-0.2/seed-42"], timed["structured_gradient-0.2/seed-42"]
    assert before["ffn_neurons"] < unpruned["ffn_neurons"] == 2 * 64
    assert before["flops"]["length_32"]["dense"] < unpruned["flops"]["length_32"]["dense"]
    record = read(repo, "reports/prune/sst2/structured_gradient-0.2/seed-42/heads.json")
    assert record["kind"] == "structured" and 0.15 < record["removed_mac_fraction"] <= 0.2
    after = read(repo, "reports/post_prune/sst2/seed-42/sample-42.json")
    other_sample = read(repo, "reports/post_prune/sst2/seed-42/sample-43.json")  # a Fisher sample per pruning seed
    assert (after["sample_seed"], other_sample["sample_seed"]) == (42, 43)
    (budget,) = after["budgets"]
    assert budget["mac_ratio"] == 0.4 and budget["onnx_max_abs_diff"] < 1e-4 and after["fisher_examples"] > 0
    assert list(budget["reconstructions"]) == ["none", *params["post_prune"]["reconstructions"]]
    assert budget["test"] == budget["reconstructions"][budget["chosen"]]["test"]  # the best on validation, deployed
    assert (repo / "models/post_pruned/sst2/seed-42/sample-42/macs-removed-0.4.onnx").is_file()
    distilled = budget["recovered"]["distill"]  # retrained for one pass over the 64 train sentences
    assert distilled["steps"] == 2 and distilled["onnx_max_abs_diff"] < 1e-4 and "int8" in distilled
    assert (repo / "models/post_pruned/sst2/seed-42/sample-42/macs-removed-0.4-distill-int8.onnx").is_file()
    table = pd.read_csv(repo / "reports" / "structured" / "sst2.csv")
    modes = set(zip(table["strategy"], table["mode"].fillna(""), table["precision"]))
    assert {("none", "", "int8"), ("structured_gradient", "after", "int8"), ("structured_gradient", "distill", "fp32"),
            ("structured_gradient", "distill", "int8"), ("structured_gradient", "before", "int8")} <= modes
    assert set(zip(table["strategy"], table["mode"].fillna(""))) >= {
        ("none", ""), ("head_gradient", "before"), ("structured_gradient", "before"), ("structured_gradient", "after"),
        ("structured_mcap", "before"), ("structured_mcap", "after")}
    assert "imp" not in set(table["strategy"])  # unstructured zeros are no dense speed-up
    row = table[(table["mode"] == "after") & (table["strategy"] == "structured_gradient")].iloc[0]  # 6 significant digits
    assert row["mcc_delta"] == pytest.approx((budget["test"]["mcc"] + other_sample["budgets"][0]["test"]["mcc"]) / 2
                                             - after["unpruned"]["test"]["mcc"], rel=1e-5, abs=1e-6)
    timed_after = read(repo, "reports/post_prune_latency/sst2.json")  # once per architecture the budgets left
    assert row["speedup_onnx_b32"] == pytest.approx(sum(timed_after[layout_key(
        record["budgets"][0]["kept_heads"], record["budgets"][0]["intermediate_sizes"])]["onnx"]["speedup"][
        "onnx_batch_32"]["median"] for record in (after, other_sample)) / 2, rel=1e-5)
    assert row["mcc_without_rearrangement_mean"] == pytest.approx(sum(  # Fisher: masks rearranged
        record["budgets"][0]["test_without_rearrangement"]["mcc"] for record in (after, other_sample)) / 2,
        rel=1e-5, abs=1e-6)
    deployed = read(repo, "reports/deploy/sst2/structured_gradient-0.2/seed-42.json")  # by pruning seed
    assert set(deployed) == {"42", "43"}
    assert all(d["onnx_max_abs_diff"] < 1e-4 and "int8" in d for d in deployed.values())
    assert (repo / "models/deployed/sst2/structured_gradient-0.2/seed-42/pruning-seed-43/model.onnx").is_file()
    timed = read(repo, "reports/latency/sst2.json")  # once per pruned architecture, not per fine-tuning seed
    onnx = [timed[f"structured_gradient-0.2/seed-{seed}"]["onnx"]["speedup"] for seed in (42, 43)]
    assert "onnx" not in timed["head_gradient-0.2/seed-42"]  # not deployed
    before_row = table[(table["strategy"] == "structured_gradient") & (table["mode"] == "before")
                       & (table["precision"] == "fp32")].iloc[0]
    assert before_row["speedup_onnx_b32"] == pytest.approx(
        sum(speedup["onnx_batch_32"]["median"] for speedup in onnx) / 2, rel=1e-5)
    assert (table[table["strategy"] == "head_gradient"]["speedup_onnx_b32"]).isna().all()  # not deployed
    learned = read(repo, "reports/post_prune/sst2-structured_mcap/seed-42/sample-42.json")
    assert learned["ranking"] == "meta-controller" and learned["budgets"][0]["onnx_max_abs_diff"] < 1e-4
    assert learned["unpruned"]["test"] == after["unpruned"]["test"]  # the same fine-tuned model, ranked by δ instead
    by_budget = read(repo, "reports/structured_mcap/delta_by_budget/sst2.json")
    assert list(by_budget["by_budget"]) == ["0.4"] and by_budget["seed"] == 42  # a controller per budget
    budgets = read(repo, "reports/structured_mcap/controller_budgets/diagnostics.json")
    removed = budgets["by_budget"]["0.4"]["removed"]["sst2"]  # what that controller's scores remove
    assert 0.3 < removed["removed_mac_fraction"] <= 0.4
    assert removed["removed_mac_fraction"] == pytest.approx(learned["budgets"][0]["removed_mac_fraction"])
    mcap_before = read(repo, "reports/prune/sst2/structured_mcap-0.2/seed-43/heads.json")
    assert mcap_before["kind"] == "structured" and 0.1 < mcap_before["removed_mac_fraction"] <= 0.2
    assert "## Targets" in (repo / "reports" / "structured" / "sst2.md").read_text()
    assert (repo / "reports" / "structured" / "sst2.png").stat().st_size > 0
    paired = pd.read_csv(repo / "reports" / "structured" / "sst2-reconstruction.csv")
    chosen = paired[(paired["method"] == "chosen") & (paired["reference"] == "none")].iloc[0]
    assert chosen["mcc_delta"] == pytest.approx(
        budget["test"]["mcc"] - budget["reconstructions"]["none"]["test"]["mcc"], rel=1e-5, abs=1e-6)


def table_rows(table: str, heading: str) -> list[str]:
    section = table.split(f"## {heading}\n", 1)[1].split("\n## ", 1)[0]
    lines = section.splitlines()
    return [line for line, below in zip(lines, lines[1:] + [""]) if line.startswith("| ") and not below.startswith("|---")]


def test_table1_has_a_row_per_strategy_and_the_papers_table(pipeline_repo):
    repo, params = pipeline_repo
    table = (repo / "reports" / "table1.md").read_text()
    for heading in ("sst2", "subj — transfer"):
        rows = table_rows(table, heading)
        assert len(rows) == len(params["strategies"]) == 15
        assert any(row.startswith("| 7. MCAP |") for row in rows)
        assert any(row.startswith("| 7b. MCAP, iterative (not in paper) |") for row in rows)
    assert "The paper's Table I (their numbers" in table
    assert (repo / "reports" / "prune" / "sst2" / "head_sep-0.2" / "seed-42" / "heads.png").stat().st_size > 0


def test_controllers_write_delta_for_their_tasks_and_the_transfer_task_gets_inferred_scores(pipeline_repo):
    repo, _params = pipeline_repo
    for strategy in ("mcap", "mcap_joint"):
        trained = read(repo, f"reports/controllers/{strategy}/0.2/delta/sst2.json")
        inferred = read(repo, f"reports/prune/subj/{strategy}-0.2/delta.json")  # by the prune stage, no retraining
        for delta, seen in ((trained, True), (inferred, False)):
            assert set(delta["delta_by_seed"]) == {"42", "43"}  # one per mcap.seeds
            assert len(delta["delta_by_seed"]["42"]) == 2 and len(delta["delta_by_seed"]["42"][0]) == 4
            assert delta["seen_in_meta_training"] == seen
        assert not (repo / "reports" / "controllers" / strategy / "0.2" / "delta" / "subj.json").exists()
    trained = read(repo, "reports/controllers/mcap/0.2/delta/sst2.json")
    diagnostics = read(repo, "reports/controllers/mcap/0.2/diagnostics.json")
    assert set(diagnostics["seed_spearman"]["sst2"]) == {"42~43"} and diagnostics["task_spearman"] == {}
    assert diagnostics["objective_start"] > 0
    assert 0 <= read(repo, "reports/mcap/cnn/metrics.json")["heldout_accuracy"] <= 1
    # mcap_iterative: 0.2 of 8 heads in steps of 0.1 = a step removing 0, then one removing 1 (subj: steps replayed)
    for path in ("reports/controllers/mcap_iterative/0.2/delta/sst2.json", "reports/prune/subj/mcap_iterative-0.2/delta.json"):
        scores = read(repo, path)["delta_by_seed"]
        assert set(scores) == {"42", "43"}
        assert sorted(int(score) for row in scores["42"] for score in row) == [1] + [2] * 7
    iterative = read(repo, "reports/controllers/mcap_iterative/0.2/diagnostics.json")
    assert [step["ratio"] for step in iterative["steps"]] == [0.1, 0.2] and iterative["task_spearman"] == {}
    pruned = {seed: read(repo, f"reports/prune/sst2/mcap-0.2/seed-{seed}/heads.json")["head_scores"] for seed in (42, 43)}
    assert pruned == {seed: trained["delta_by_seed"][str(seed)] for seed in (42, 43)}  # each pruning seed's controller
    assert (repo / "reports" / "mcap" / "attention" / "subj.png").is_file()


def test_explanations_for_every_strategy_with_faithfulness_in_the_metrics(pipeline_repo):
    repo, params = pipeline_repo
    lime = (repo / "reports" / "explain" / "lime_table.md").read_text()
    assert len(table_rows(lime, "sst2")) == 15
    assert "U1 (empty text)" in lime  # the empty extra text is skipped and reported
    for strategy in params["strategies"]:
        model_metrics = read(repo, f"reports/explain/models/sst2-{strategy}-0.2/metrics.json")
        assert {"comprehensiveness", "sufficiency"} <= set(model_metrics["shap"])
        assert (repo / "reports" / "explain" / "models" / f"sst2-{strategy}-0.2" / "png" / "shap_T2.png").is_file()
    assert "mcap" in read(repo, "reports/explain/summary.json")["sst2"]
    assert "Most faithful" in (repo / "reports" / "explain" / "faithfulness.md").read_text()


def test_the_ranking_stage_scores_every_head_strategy_per_ratio_and_seed(pipeline_repo):
    repo, params = pipeline_repo
    points = pd.read_csv(repo / "reports" / "ranking" / "sst2" / "ranking.csv")
    head_strategies = {"head_sep", "head_entropy", "head_random", "head_gradient", "head_gradient_ft", "mcap",
                       "mcap_iterative", "mcap_joint"}
    assert set(points["strategy"]) == head_strategies | {"none"}
    learned = points[points["strategy"].isin(LEARNED_HEADS)]
    assert set(learned["scores_ratio"]) == set(params["prune"]["ratios"])  # the controllers trained at 0.2 only
    assert points[~points["strategy"].isin(LEARNED_HEADS)]["scores_ratio"].isna().all()
    unpruned = points[points["strategy"] == "none"].iloc[0]
    assert unpruned["kl"] == 0 and unpruned["task_loss"] == 0 and (points[points["strategy"] != "none"]["kl"] > 0).all()
    assert set(points[points["strategy"] == "head_random"]["seed"]) == set(params["ranking"]["seeds"])
    assert set(points[points["strategy"] != "none"]["ratio"]) == set(params["ranking"]["ratios"])
    assert (repo / "reports" / "ranking" / "sst2" / "ranking.png").stat().st_size > 0
    agreement = read(repo, "reports/ranking/sst2/agreement.json")
    assert set(agreement) == {"sst2"} and set(agreement["sst2"]) == head_strategies - {"head_gradient"}
    assert all(-1 <= value <= 1 for value in agreement["sst2"].values())


def test_an_edit_to_one_strategy_reprunes_but_refits_no_model_that_did_not_change(pipeline_repo):
    repo, _params = pipeline_repo
    module = repo / "src" / "mcap" / "strategies" / "head_random.py"
    original = module.read_text()
    module.write_text(original + "# a comment\n")
    try:
        output = run(["dvc", "repro"], repo)
    finally:
        module.write_text(original)
    assert "Running stage 'prune@sst2'" in output and "Running stage 'ranking@sst2'" in output
    assert "Running stage 'finetune@" not in output and "Running stage 'latency@" not in output
    run(["dvc", "repro"], repo)  # back to the committed module: the same models again, nothing refitted


def test_changing_the_ratios_reruns_pruning_but_never_the_split_and_seeds_pair(pipeline_repo):
    repo, _params = pipeline_repo
    # A subset of strategies keeps this fast; what matters is which stages the ratio reaches.
    output = run(["dvc", "exp", "run", "-S", "prune.ratios=[0.5]", "-S", "strategies=[none,head_random,mcap]",
                  "-S", "mcap.strategies=[mcap]", "-S", "seeds=[42,7]", "-S", "deploy.strategies=[]",
                  "-S", "post_prune.tasks=[]", "-S", "post_prune.learned=[]", "-S", "ranking.tasks=[]"], repo)
    for stage in ("controller@mcap-0.5", "prune@sst2", "prune@subj", "finetune@sst2-mcap-0.5-7",
                  "finetune@subj-mcap-0.5-7", "latency@sst2", "report", "explain_report"):
        assert f"Running stage '{stage}'" in output
    for stage in ("split", "attention_maps", "pattern_cnn", "meta_pool"):
        assert f"Running stage '{stage}'" not in output
    mcap_row = next(row for row in table_rows((repo / "reports" / "table1.md").read_text(), "sst2")
                    if row.startswith("| 7. MCAP |"))
    assert mcap_row.count(" ± ") >= 2 + 3  # latencies, then MCC, loss and accuracy over its four models
    paired = pd.read_csv(repo / "reports" / "comparison" / "paired.csv")
    assert set(paired.reference) == {"head_random"} and set(paired.ratio) == {0.5}
    assert set(paired.strategy) == {"none", "mcap"} and (paired.n_pairs == 2).all()
    assert (paired.ci_low <= paired.mean_delta).all() and (paired.mean_delta <= paired.ci_high).all()


@pytest.mark.parametrize(("setting", "message"), [
    (["-S", "seeds=[]"], "'seeds' must be a non-empty list of distinct integers, got []"),
    (["-S", "strategies=[]"], "'strategies' must be a non-empty list of distinct strategy names, got []"),
    (["-S", "strategies=[none,head_magic]"], "'strategies' lists unknown ['head_magic']"),
    (["-S", "mcap.strategies=[]"], ("'strategies' lists 'mcap', which prunes with a meta-controller's scores: list it "
                                    "in 'mcap.strategies' too")),
    (["-S", "prune.ratio=0.5"], "Could not override 'prune.ratio'"),  # DVC's own refusal names the key
])
def test_a_bad_grid_is_refused_with_the_key_named(pipeline_repo, setting, message):
    repo, _params = pipeline_repo
    committed = (repo / "params.yaml").read_text()
    try:
        result = subprocess.run(["dvc", "exp", "run", *setting], cwd=repo, capture_output=True, text=True, check=False,
                                env={**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"})
    finally:
        (repo / "params.yaml").write_text(committed)
    assert result.returncode != 0
    assert message in result.stdout + result.stderr
    assert "Could not find" not in result.stdout + result.stderr  # no DVC parse error about an index
