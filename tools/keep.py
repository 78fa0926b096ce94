"""Keep a pipeline run's evidence in git, so that a grid too long for one sitting runs in chunks of one pipeline and
the README renders from it:

    python tools/keep.py restore comparison   # the kept run's params.yaml, dvc.lock and reports into the workspace
    dvc exp run $(grep -v '^#' profiles/comparison.args) -S 'seeds=[42,43]' --allow-missing   # one more chunk
    python tools/keep.py keep comparison      # params.yaml, dvc.lock and every report the lock lists, kept

A run is kept as ``reports/runs/<name>/``: its ``params.yaml``, its ``dvc.lock`` and the git-tracked outputs
(``cache: false``) that lock records. ``--allow-missing`` skips the stages of earlier chunks whose models are not in
this machine's DVC cache and that nothing else changed; ``keep`` refuses a run with a stage behind the code or params.
A kept run counts only while every code file its lock records is the committed one (:func:`stale_code`).
"""

from __future__ import annotations

import hashlib
import shutil
import sys
from pathlib import Path

import yaml

RUNS = Path("reports/runs")
FILES = ("params.yaml", "dvc.lock")
CODE = ("stages/", "src/")


def locked_stages(lock: Path) -> dict:
    return yaml.safe_load(lock.read_text())["stages"]


def tracked_outputs(lock: Path) -> list[Path]:
    """The outputs under reports/ that ``lock`` records: git keeps them (``cache: false``); models stay in DVC."""
    paths = {Path(out["path"]) for stage in locked_stages(lock).values() for out in stage.get("outs", [])}
    return sorted(path for path in paths if path.parts[0] == "reports")


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


def copy(source: Path, target: Path) -> None:
    if target.is_dir():
        shutil.rmtree(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    (shutil.copytree if source.is_dir() else shutil.copy2)(source, target)


def keep(name: str) -> Path:
    """Copy the workspace's params, lock and the reports the lock lists to reports/runs/<name>/ (replacing it)."""
    from render import dvc_status, stale_stages

    stale = stale_stages(dvc_status())
    if stale:
        sys.exit(f"error: not kept: {len(stale)} stage(s) are behind the code or params (dvc status), e.g. "
                 f"{next(iter(stale))}; finish the run first")
    folder = RUNS / name
    if folder.exists():
        shutil.rmtree(folder)
    for path in [*map(Path, FILES), *tracked_outputs(Path("dvc.lock"))]:
        if path.exists():
            copy(path, folder / path)
    return folder


def restore(name: str) -> None:
    """Put a kept run's params, lock and reports back into the workspace, replacing the reports its lock lists."""
    folder = RUNS / name
    if not (folder / "dvc.lock").is_file():
        sys.exit(f"error: {folder}/dvc.lock not found: no run kept as {name!r} (kept: "
                 f"{sorted(p.name for p in RUNS.glob('*/dvc.lock'))})")
    for path in tracked_outputs(folder / "dvc.lock"):
        if path.exists():
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    for path in [*map(Path, FILES), *tracked_outputs(folder / "dvc.lock")]:
        if (folder / path).exists():
            copy(folder / path, path)


def main() -> None:
    if len(sys.argv) != 3 or sys.argv[1] not in ("keep", "restore"):
        sys.exit("usage: python tools/keep.py keep|restore NAME")
    command, name = sys.argv[1:]
    if command == "keep":
        print(f"kept in {keep(name)}; back to the committed run: git checkout -- params.yaml dvc.lock reports && "
              "git clean -fdq reports -e runs && dvc checkout", file=sys.stderr)
    else:
        restore(name)


if __name__ == "__main__":
    main()
