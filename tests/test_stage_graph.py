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
from mcap.strategies.base import HeadStrategy, LearnedStrategy

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
                if dep.startswith(prefix) and stage not in found:
                    found.add(stage)
                    frontier.append(stage)
    return found


def stage_params(body: dict) -> list[str]:
    return [p if isinstance(p, str) else next(iter(p)) for p in body.get("params", [])]


def test_no_path_from_the_pruning_ratio_to_attention_maps_or_the_cnn():
    stages = STAGES
    for name in ("attention_maps", "pattern_cnn"):
        for stage in {name} | upstream_stages(stages, name):
            assert not any(p in ("prune", "prune.ratio") for p in stage_params(stages[stage])), stage
    assert "prune.ratio" in stage_params(stages["meta_controller"])
    assert "meta_controller" in upstream_stages(stages, "prune_mcap")


def test_the_pruning_seed_never_reaches_the_split():
    """``seed`` varies pruning and controller seeds; the data (``data.seed``) must stay the same."""
    assert "seed" not in stage_params(STAGES["split"]) and "data" in stage_params(STAGES["split"])
    assert not upstream_stages(STAGES, "split")


def test_the_pruning_seed_never_reaches_the_controller_or_anything_it_reads():
    """A run with another ``seed`` picks another of the trained controllers (mcap.seeds) without retraining them."""
    for controller in ("meta_controller", "meta_controller_iterative"):
        for stage in {controller} | upstream_stages(STAGES, controller):
            assert "seed" not in stage_params(STAGES[stage]), stage
        assert controller in upstream_stages(STAGES, "prune_mcap")
    assert "seed" in stage_params(STAGES["prune"]) and "seed" in stage_params(STAGES["prune_mcap"])


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
    every other one for the other lists."""
    found = []
    for name, body in STAGES.items():
        script = ROOT / body["cmd"].split()[1]
        listed = body.get("matrix", {}).get("strategy")
        strategies = LEARNED_LISTS.get(listed, [s for s in known_strategies() if s not in LEARNED])
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


HEAD_STRATEGIES = ["head_sep", "head_entropy", "head_random", "head_gradient", "mcap", "mcap_iterative"]


@pytest.mark.parametrize("strategy", HEAD_STRATEGIES)
def test_editing_one_head_strategy_reruns_only_its_own_stages(strategy):
    """Its prune stages and the ranking stage, which scores every head strategy; nothing of another strategy."""
    suffix = "_mcap" if strategy in LEARNED else ""
    assert stages_depending_on(STRATEGIES / f"{strategy}.py") == {
        f"prune{suffix}@{strategy}", f"prune_transfer{suffix}@{strategy}", "ranking"}


@pytest.mark.parametrize("strategy", LEARNED)
def test_new_learned_scores_rerun_only_the_stages_of_their_strategy(strategy):
    """A retrained controller's scores reach its strategy's prune stages (and, for head scores, the ranking of every
    head strategy), not the prune stage of any other strategy."""
    ranking = {"ranking"} if isinstance(get_strategy(strategy), HeadStrategy) else set()
    assert stages_depending_on(ROOT / "reports" / strategy / "delta") == {f"prune_mcap@{strategy}"} | ranking
    assert stages_depending_on(ROOT / "reports" / strategy / "delta_transfer") == {f"prune_transfer_mcap@{strategy}"}
    assert stages_depending_on(ROOT / "models" / "meta_controller" / strategy) == {f"transfer_scores@{strategy}"}


@pytest.mark.parametrize("strategy", LEARNED_STRUCTURED)
def test_controllers_trained_per_budget_rerun_only_the_after_finetuning_sweep_they_rank(strategy):
    """The controllers of meta_controller_budgets rank post_prune_mcap's units, and nothing pruned before fine-tuning;
    the controller trained at prune.ratio is not among their inputs, so `-S prune.ratio` reruns neither."""
    assert stages_depending_on(ROOT / "reports" / strategy / "delta_by_budget") == {f"post_prune_mcap@{strategy}"}
    assert "prune.ratio" not in stage_params(STAGES["meta_controller_budgets"])
    assert "prune.ratio" not in stage_params(STAGES["post_prune_mcap"])


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


def test_a_new_transfer_task_reaches_no_table_i_stage_directly():
    """The Table I stages (pruning, fine-tuning, evaluation, explanations) read only their own task's files and
    params, so a new transfer task's data and scores (new files in data/processed and reports/<strategy>/delta) do
    not rerun them. The stages that take every task (split, attention_maps, the controllers) still rerun."""
    for name, body in STAGES.items():
        if body.get("matrix", {}).get("task") not in ("${tasks}", "${explain.tasks}"):
            continue
        assert not any(param.startswith("transfer") for param in stage_params(body)), name
        assert not [dep for dep in body["deps"] if dep in ("data/processed", "data/attention") or dep.endswith("/delta")], name


CONTROLLER_STAGES = ["meta_controller", "meta_controller_iterative", "meta_controller_structured", "meta_controller_budgets"]


@pytest.mark.parametrize("controller", CONTROLLER_STAGES)
def test_a_new_transfer_task_retrains_no_controller(controller):
    """A transfer task changes `transfer.tasks` and rewrites data/processed and data/attention. The controllers
    read neither: their train sentences come through meta_pool, which keeps the tasks of `tasks` only (DVC reruns
    it, finds its output unchanged and stops there), and the pattern CNN reads no task. The new task's scores
    come from transfer_scores, with the controllers already trained."""
    pool = STAGES["meta_pool"]
    assert not any(param.startswith("transfer") for param in stage_params(pool))
    assert pool["outs"] == ["data/meta_pool"]
    behind_pool = upstream_stages(STAGES, "meta_pool") | {"meta_pool"}
    for stage in ({controller} | upstream_stages(STAGES, controller)) - behind_pool:
        assert not any(param.startswith("transfer") for param in stage_params(STAGES[stage])), stage
        assert not [dep for dep in STAGES[stage]["deps"] if dep in ("data/processed", "data/attention")], stage
    assert STAGES["transfer_scores"]["matrix"]["task"] == "${transfer.tasks}"
    assert not any(param.startswith("transfer") for param in stage_params(STAGES["transfer_scores"]))
