"""Which outputs may be rendered: a stage is stale when its code, params or command changed since ``dvc.lock``
recorded it, and a kept run (``tools/keep.py``) is stale when a code file its lock records changed since the commit
that made it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml

CODE = ("stages/", "src/")  # the code a stage depends on; data and models are not code


def holds_only_gitignores(folder: Path) -> bool:
    """An output folder as a fresh clone has it: only the .gitignore files DVC commits beside its outputs (absent,
    like a "deleted" one, not changed)."""
    return folder.is_dir() and all(path.name == ".gitignore" for path in folder.rglob("*") if path.is_file())


def absent_outputs(status: dict) -> set[str]:
    """The outputs ``dvc status`` finds missing (a fresh clone has no DVC cache: "deleted", "not in cache")."""
    return {path for changes in status.values() for change in changes if isinstance(change, dict)
            for path, how in change.get("changed outs", {}).items() if how in ("deleted", "not in cache")}


def stale_stages(status: dict) -> dict[str, list[str]]:
    """{stage: the code, params or command that changed since dvc.lock recorded its outputs}. An input or output that
    is only absent does not make a stage stale, nor does a folder that differs only by the absent outputs it holds (a
    report folder whose cached plots a fresh clone lacks)."""
    absent = absent_outputs(status)
    stale = {}
    for stage, changes in status.items():
        changed = []
        for change in changes:
            if change == "changed command" or (isinstance(change, dict) and "changed command" in change):
                changed.append("its command")
            for path, how in (change.get("changed deps", {}).items() if isinstance(change, dict) else ()):
                if isinstance(how, dict):  # a params file: {key: "modified" | "new" | "deleted"}
                    changed += [f"{path}: {key}" for key in how]
                elif how != "deleted" and not holds_only_gitignores(Path(path)) and not any(
                        out == path or out.startswith(f"{path}/") for out in absent):
                    changed.append(path)
        if changed:
            stale[stage] = changed
    return stale


def dvc(*args: str) -> str:
    return subprocess.run([str(Path(sys.executable).parent / "dvc"), *args], capture_output=True, text=True,
                          check=True).stdout


def dvc_status() -> dict:
    """``dvc status --json`` of the pipeline: {stage: [changes]} for every stage not up to date."""
    return json.loads(dvc("status", "--json") or "{}")


def pipeline_stages() -> set[str]:
    """The stages dvc.yaml expands to under the workspace's params.yaml (``foreach``/``matrix`` over its lists)."""
    return set(dvc("stage", "list", "--name-only").split())


def locked_stages(lock: Path) -> dict:
    return yaml.safe_load(lock.read_text())["stages"]


def stale_code(lock: Path, commit: str | None) -> list[str]:
    """The code dependencies (stages/, src/) ``lock`` records whose files in the workspace differ from ``commit``'s,
    the commit that made the run (``keep`` refuses uncommitted code, so the lock records that commit's files). A
    run without a recorded commit cannot be traced: every code dependency counts as changed."""
    paths = sorted({dep["path"] for stage in locked_stages(lock).values() for dep in stage.get("deps", [])
                    if dep["path"].startswith(CODE)})
    if commit is None:
        return paths
    changed = subprocess.run(["git", "diff", "--name-only", commit, "--", *paths], capture_output=True, text=True,
                             check=True).stdout.split()
    return [path for path in paths if any(file == path or file.startswith(f"{path}/") for file in changed)]


def code_commit() -> str:
    """The commit whose stages/ and src/ the workspace runs; an error if they hold uncommitted changes (a run made
    with them could not be traced back to any commit)."""
    git = ["git", "-C", str(Path.cwd())]
    changed = subprocess.run([*git, "status", "--porcelain", "--", *CODE], capture_output=True, text=True,
                             check=True).stdout.split("\n")
    changed = [line[3:] for line in changed if line.strip()]
    if changed:
        sys.exit(f"error: stages/ or src/ hold uncommitted changes ({', '.join(changed[:3])}); commit the code first")
    return subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
