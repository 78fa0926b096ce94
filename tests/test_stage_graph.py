"""The DVC stage graph: what a change to params or code reruns.

Each stage must list every ``mcap`` module its script imports (transitively), so that editing a
module reruns exactly the stages that run it; and the pruning ratio must not reach the stages
that do not depend on it.
"""

import ast
from pathlib import Path

import pytest
import yaml

from mcap.strategies import get_strategy, known_strategies
from mcap.strategies.base import LearnedStrategy

ROOT = Path(__file__).resolve().parents[1]
STAGES = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]


def upstream_stages(stages: dict, name: str) -> set[str]:
    """Stages whose outputs ``name`` depends on, transitively (by output-path prefix)."""
    outputs = {}
    for stage, body in stages.items():
        for out in body.get("outs", []) + body.get("metrics", []) + body.get("plots", []):
            outputs[next(iter(out)) if isinstance(out, dict) else out] = stage
    found, frontier = set(), [name]
    while frontier:
        deps = stages[frontier.pop()].get("deps", [])
        for dep in [d.replace("${item.strategy}", s) for d in deps for s in known_strategies()]:  # every strategy it may run
            for out, stage in outputs.items():
                prefix = out.split("$")[0]
                if (dep.startswith(prefix) or prefix.startswith(dep.rstrip("/") + "/")) and stage not in found:
                    found.add(stage)
                    frontier.append(stage)
    return found


def stage_params(body: dict) -> list[str]:
    return [p if isinstance(p, str) else next(iter(p)) for p in body.get("params", [])]


def test_no_path_from_the_pruning_ratios_to_attention_maps_or_the_cnn():
    stages = STAGES
    for name in ("attention_maps", "pattern_cnn"):
        for stage in {name} | upstream_stages(stages, name):
            assert not any(p.startswith("prune") for p in stage_params(stages[stage])), stage
    assert stages["controller"]["matrix"]["ratio"] == "${prune.ratios}"
    assert "controller" in upstream_stages(stages, "prune")


def test_the_pruning_seeds_never_reach_the_split():
    """The pruning seeds vary pruning and controllers; the data (``data.seed``) must stay the same."""
    assert not any(p.startswith("prune") for p in stage_params(STAGES["split"])) and "data" in stage_params(STAGES["split"])
    assert not upstream_stages(STAGES, "split")


def test_the_pruning_seeds_never_reach_the_controller_or_anything_it_reads():
    """Another pruning seed picks another of the trained controllers (mcap.seeds) without retraining them."""
    for stage in {"controller"} | upstream_stages(STAGES, "controller"):
        assert not any(p.startswith("prune") or p == "seeds" for p in stage_params(STAGES[stage])), stage
    assert "prune" in stage_params(STAGES["prune"])


def module_file(module: str) -> Path:
    path = ROOT / "src" / Path(*module.split("."))
    return path / "__init__.py" if path.is_dir() else path.with_suffix(".py")


def imported_modules(path: Path) -> set[str]:
    """``mcap`` modules imported anywhere in a file (top level or inside functions)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("mcap"):
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names if module_file(f"{node.module}.{alias.name}").exists()}
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith("mcap")}
    return found


def code_used_by(script: Path) -> set[Path]:
    """Every source file of ``mcap`` that ``script`` imports, following imports."""
    files, frontier = set(), list(imported_modules(script))
    while frontier:
        path = module_file(frontier.pop())
        if path not in files:
            files.add(path)
            frontier += imported_modules(path)
    return files


STRATEGIES = ROOT / "src" / "mcap" / "strategies"
LOADER = STRATEGIES / "base.py"  # get_strategy imports a strategy's module by name, on first use


def loads_strategies(files: set[Path]) -> bool:
    """Whether any of ``files`` (besides the loader itself) looks strategies up by name."""
    return any(isinstance(node, ast.Name) and node.id == "get_strategy"
               for path in files - {LOADER} for node in ast.walk(ast.parse(path.read_text())))


LEARNED = [name for name in known_strategies() if isinstance(get_strategy(name), LearnedStrategy)]
LEARNED_STRUCTURED = [name for name in LEARNED if get_strategy(name).kind == "structured"]
LEARNED_LISTS = {"${mcap.strategies}": LEARNED, "${post_prune.learned}": LEARNED_STRUCTURED}


def concrete_stages() -> list[tuple[str, Path, list[Path]]]:
    """(stage, script, declared deps) per stage; a stage over ``${item.strategy}`` once per strategy its list may
    hold: the learned strategies for ``mcap.strategies``, the learned structured ones for ``post_prune.learned``,
    every strategy for ``strategies`` and ``deploy.strategies``."""
    found = []
    for name, body in STAGES.items():
        script = ROOT / body["cmd"].split()[1]
        listed = body.get("matrix", {}).get("strategy")
        strategies = LEARNED_LISTS.get(listed, known_strategies())
        for strategy in strategies if "${item.strategy}" in body["cmd"] else [None]:
            deps = [ROOT / dep.replace("${item.strategy}", strategy or "") for dep in body["deps"]]
            found.append((f"{name}@{strategy}" if strategy else name, script, deps))
    return found


def code_run_by(script: Path, strategy: str | None) -> set[Path]:
    """What a stage runs: its script's imports, plus the strategy modules it loads by name (its own strategy where
    the stage is per strategy, else every one) with their imports."""
    files = code_used_by(script)
    if loads_strategies(files):
        modules = [STRATEGIES / f"{strategy}.py"] if strategy else [p for p in STRATEGIES.glob("*.py") if p != LOADER]
        for module in modules:
            files |= {module} | code_used_by(module)
    return files


def test_every_stage_depends_on_all_the_code_it_runs():
    for name, script, declared in concrete_stages():
        strategy = name.split("@")[1] if "@" in name else None
        missing = [path.relative_to(ROOT).as_posix() for path in code_run_by(script, strategy)
                   if not any(path == dep or dep in path.parents for dep in declared)]
        assert script in declared, name
        assert not missing, f"stage {name} runs {missing} but does not list it in deps"


def stages_depending_on(path: Path) -> set[str]:
    """The stages with a dependency on ``path``, on a folder holding it, or on a file inside it."""
    return {name for name, _script, declared in concrete_stages()
            if any(path == dep or dep in path.parents or path in dep.parents for dep in declared)}


@pytest.mark.parametrize("strategy", known_strategies())
def test_editing_one_strategy_reruns_the_pruning_and_no_fine_tuning(strategy):
    """Its module reaches the prune stages (one process per task prunes every strategy, and writes the models of the
    others byte for byte as before) and the ranking, never a fine-tuning: each finetune stage reads only its own
    strategy's pruned models, so only a model that changed is fine-tuned again (tests/test_pipeline.py runs it)."""
    assert {name.partition("@")[0] for name in stages_depending_on(STRATEGIES / f"{strategy}.py")} == {"prune", "ranking"}
    finetune = STAGES["finetune"]
    assert [dep for dep in finetune["deps"] if dep.startswith("models/")] == [
        "models/pruned/${item.task}/${item.strategy}-${item.ratio}"]


@pytest.mark.parametrize("strategy", LEARNED)
def test_new_learned_scores_reach_the_pruning_and_the_ranking_only(strategy):
    assert {name.partition("@")[0] for name in stages_depending_on(ROOT / "reports" / "controllers" / strategy)} == {
        "prune", "ranking"}


@pytest.mark.parametrize("strategy", LEARNED_STRUCTURED)
def test_controllers_trained_per_budget_rerun_only_the_after_finetuning_sweep_they_rank(strategy):
    """The controllers of meta_controller_budgets rank post_prune_learned's units, and nothing pruned before
    fine-tuning; they do not depend on prune.ratios, so `-S prune.ratios=...` retrains none of them."""
    assert {name.partition("@")[0] for name in stages_depending_on(ROOT / "reports" / strategy / "delta_by_budget")} == {
        "post_prune_learned"}
    assert not any(p in ("prune", "prune.ratios") for p in stage_params(STAGES["meta_controller_budgets"]))


def test_code_no_stage_runs_is_no_stage_dependency():
    """A module listed in deps that the stage does not run reruns it for nothing (e.g. a helper in the wrong module).
    A stage over strategies has one deps list for all of them: a module is in use if one of them runs it."""
    stages = concrete_stages()
    used_by: dict[str, set[Path]] = {}
    for name, script, _declared in stages:
        stage, _, strategy = name.partition("@")
        used_by.setdefault(stage, set()).update(code_run_by(script, strategy or None))
    for name, script, declared in stages:
        unused = [dep.relative_to(ROOT).as_posix() for dep in declared
                  if dep.suffix == ".py" and dep != script and dep not in used_by[name.partition("@")[0]]]
        assert not unused, f"stage {name} lists {unused} in deps but none of its strategies runs them"


def test_the_committed_lock_holds_exactly_the_stages_of_the_pipeline():
    """Stages renamed or dropped from dvc.yaml leave entries in dvc.lock that no run refreshes; a fresh lock has none."""
    import subprocess
    import sys

    dvc = Path(sys.executable).parent / "dvc"
    listed = subprocess.run([str(dvc), "stage", "list", "--name-only"], cwd=ROOT, capture_output=True, text=True, check=True)
    locked = yaml.safe_load((ROOT / "dvc.lock").read_text())["stages"]
    assert set(locked) == set(listed.stdout.split())


def test_a_new_task_reaches_no_other_tasks_stages():
    """The per-task stages (pruning, fine-tuning, timing, explanations, post_prune, deploy) read only their own task's
    files, and not the list of tasks, so a new (transfer) task reruns none of another task's."""
    for name, body in STAGES.items():
        if "task" not in body.get("matrix", {}):
            continue
        assert "tasks" not in stage_params(body), name
        assert not [dep for dep in body["deps"] if dep in ("data/processed", "data/attention")], name


CONTROLLER_STAGES = ["controller", "meta_controller_budgets"]


@pytest.mark.parametrize("controller", CONTROLLER_STAGES)
def test_a_new_transfer_task_retrains_no_controller(controller):
    """A transfer task changes `tasks` and rewrites data/processed and data/attention. The controllers read neither:
    their train sentences come through meta_pool, which keeps mcap.train_tasks only (DVC reruns it, finds its output
    unchanged and stops there), and the pattern CNN reads no task. The new task's scores are inferred by its prune
    stage, with the controllers already trained."""
    pool = STAGES["meta_pool"]
    assert pool["outs"] == ["data/meta_pool"]
    behind_pool = upstream_stages(STAGES, "meta_pool") | {"meta_pool"}
    for stage in ({controller} | upstream_stages(STAGES, controller)) - behind_pool:
        assert "tasks" not in stage_params(STAGES[stage]), stage
        assert not [dep for dep in STAGES[stage]["deps"] if dep in ("data/processed", "data/attention")], stage


def test_dvc_yaml_has_one_template_per_concept():
    """No variants of a stage by learned-ness or transfer: that lives in the registry and in mcap.train_tasks."""
    assert not [name for name in STAGES if name.endswith(("_mcap", "_transfer", "_transfer_mcap"))]
    assert len((ROOT / "dvc.yaml").read_text().splitlines()) <= 400
