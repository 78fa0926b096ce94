"""The DVC stage graph: what a change to params or code reruns.

Each stage must list every ``mcap`` module its script imports (transitively), so that editing a
module reruns exactly the stages that run it; and the pruning ratio must not reach the stages
that do not depend on it.
"""

import ast
from pathlib import Path

import yaml

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
        for dep in stages[frontier.pop()].get("deps", []):
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
    assert "meta_controller" in upstream_stages(stages, "prune")


def test_the_pruning_seed_never_reaches_the_split():
    """``seed`` varies pruning and controller seeds; the data (``data.seed``) must stay the same."""
    assert "seed" not in stage_params(STAGES["split"]) and "data" in stage_params(STAGES["split"])
    assert not upstream_stages(STAGES, "split")


def test_the_pruning_seed_never_reaches_the_controller_or_anything_it_reads():
    """A run with another ``seed`` picks another of the trained controllers (mcap.seeds) without retraining them."""
    for controller in ("meta_controller", "meta_controller_iterative"):
        for stage in {controller} | upstream_stages(STAGES, controller):
            assert "seed" not in stage_params(STAGES[stage]), stage
        assert controller in upstream_stages(STAGES, "prune")
    assert "seed" in stage_params(STAGES["prune"])


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
    """Every source file of ``mcap`` that ``script`` runs, following imports."""
    files, frontier = set(), list(imported_modules(script))
    while frontier:
        path = module_file(frontier.pop())
        if path in files:
            continue
        files.add(path)
        frontier += imported_modules(path)
        if path.name == "__init__.py":  # a package pulls in its modules (strategies register themselves)
            frontier += [f"{path.parent.relative_to(ROOT / 'src').as_posix().replace('/', '.')}.{f.stem}"
                         for f in path.parent.glob("*.py") if f.stem != "__init__"]
    return files


def test_every_stage_depends_on_all_the_code_it_runs():
    for name, body in STAGES.items():
        script = ROOT / body["cmd"].split()[1]
        declared = [ROOT / dep for dep in body["deps"]]
        missing = [path.relative_to(ROOT).as_posix() for path in code_used_by(script)
                   if not any(path == dep or dep in path.parents for dep in declared)]
        assert script in declared, name
        assert not missing, f"stage {name} runs {missing} but does not list it in deps"


def test_the_committed_lock_holds_exactly_the_stages_of_the_pipeline():
    """Stages renamed or dropped from dvc.yaml leave entries in dvc.lock that no run refreshes; a fresh lock has none."""
    import subprocess
    import sys

    dvc = Path(sys.executable).parent / "dvc"
    listed = subprocess.run([str(dvc), "stage", "list", "--name-only"], cwd=ROOT, capture_output=True, text=True, check=True)
    locked = yaml.safe_load((ROOT / "dvc.lock").read_text())["stages"]
    assert set(locked) == set(listed.stdout.split())
