"""Which outputs may be rendered: a stage is stale when its code, params or command changed since ``dvc.lock``
recorded it, and a kept run (``tools/keep.py``) is stale when a code file its lock records changed since."""

from __future__ import annotations

import hashlib
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


def stale_stages(status: dict) -> dict[str, list[str]]:
    """{stage: the code, params or command that changed since dvc.lock recorded its outputs}. An input or output that
    is only absent (a fresh clone has no DVC cache: "deleted", "not in cache") does not make a stage stale."""
    stale = {}
    for stage, changes in status.items():
        changed = []
        for change in changes:
            if change == "changed command" or (isinstance(change, dict) and "changed command" in change):
                changed.append("its command")
            for path, how in (change.get("changed deps", {}).items() if isinstance(change, dict) else ()):
                if isinstance(how, dict):  # a params file: {key: "modified" | "new" | "deleted"}
                    changed += [f"{path}: {key}" for key in how]
                elif how != "deleted" and not holds_only_gitignores(Path(path)):
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


def file_md5(path: Path) -> str | None:
    return hashlib.md5(path.read_bytes()).hexdigest() if path.is_file() else None


def stale_code(lock: Path, current_lock: Path = Path("dvc.lock")) -> list[str]:
    """The code dependencies (stages/, src/) ``lock`` recorded with another content than the workspace holds: a file
    by its md5, a folder by the workspace lock's record of it (a folder no current stage records counts as stale)."""
    current = {dep["path"]: dep.get("md5") for stage in locked_stages(current_lock).values() for dep in stage.get("deps", [])}
    stale = set()
    for stage in locked_stages(lock).values():
        for dep in stage.get("deps", []):
            path = dep["path"]
            if path.startswith(CODE):
                found = file_md5(Path(path)) if not dep["md5"].endswith(".dir") else current.get(path)
                if found != dep["md5"]:
                    stale.add(path)
    return sorted(stale)


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
