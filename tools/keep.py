"""Keep a pipeline run's evidence in git, so that a grid too long for one sitting runs in chunks of one pipeline and
the README renders from it:

    python tools/keep.py restore comparison   # the kept run's dvc.lock and reports into the workspace
    dvc exp run $(grep -v '^#' profiles/comparison.args) -S 'seeds=[42,43]' --allow-missing   # one more chunk
    python tools/keep.py keep comparison      # params.yaml, dvc.lock and every report the lock lists, kept

A run is kept as ``reports/runs/<name>/``: its ``params.yaml``, its ``dvc.lock``, the git-tracked outputs
(``cache: false``) that lock records and ``provenance.json``, the commit whose code made it. ``--allow-missing``
skips the stages of earlier chunks whose models are not in this machine's DVC cache and that nothing else changed;
``keep`` refuses a run with a stage behind the code or params, or made with uncommitted code. Once the code of its
stages changes, ``tools/render.py`` marks a kept run as made by its commit (:func:`provenance.stale_code`).
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import yaml

from provenance import code_commit, dvc_status, locked_stages, pipeline_stages, stale_stages

RUNS = Path("reports/runs")
LOCK = Path("dvc.lock")
PARAMS = Path("params.yaml")
PROVENANCE = "provenance.json"  # the commit whose code made the run


def tracked_outputs(lock: Path) -> list[Path]:
    """The outputs under reports/ that ``lock`` records: git keeps them (``cache: false``); models stay in DVC."""
    paths = {Path(out["path"]) for stage in locked_stages(lock).values() for out in stage.get("outs", [])}
    return sorted(path for path in paths if path.parts[0] == "reports")


def kept_commit(folder: Path) -> str | None:
    """The commit whose code made the run kept in ``folder`` (None for a run kept without one)."""
    path = folder / PROVENANCE
    return json.loads(path.read_text())["commit"] if path.is_file() else None


def copy(source: Path, target: Path) -> None:
    if target.is_dir():
        shutil.rmtree(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    (shutil.copytree if source.is_dir() else shutil.copy2)(source, target)


def keep(name: str) -> Path:
    """Copy the workspace's params, the lock's entries of this pipeline's stages and the reports they list to
    reports/runs/<name>/ (replacing it)."""
    stale = stale_stages(dvc_status())
    if stale:
        sys.exit(f"error: not kept: {len(stale)} stage(s) are behind the code or params (dvc status), e.g. "
                 f"{next(iter(stale))}; finish the run first")
    commit = code_commit()
    folder = RUNS / name
    if folder.exists():
        shutil.rmtree(folder)
    copy(PARAMS, folder / PARAMS)
    # Only the stages of this run's pipeline: the lock also holds entries of stages that other params expand to
    # (the default run's, an earlier chunk's), which would otherwise be kept and judged with the run.
    lock = yaml.safe_load(LOCK.read_text())
    stages = pipeline_stages()
    lock["stages"] = {stage: entry for stage, entry in lock["stages"].items() if stage in stages}
    (folder / LOCK).write_text(yaml.safe_dump(lock, sort_keys=False))
    for path in tracked_outputs(folder / LOCK):
        if path.exists():
            copy(path, folder / path)
    (folder / PROVENANCE).write_text(json.dumps({"commit": commit}, indent=2) + "\n")
    return folder


def restore(name: str) -> None:
    """Put a kept run's lock and reports back into the workspace, replacing the reports its lock lists. Not its
    params: the next chunk's ``dvc exp run`` sets them again from the profile on the committed params.yaml (a
    profile's ``-S ~key`` cannot delete a key twice)."""
    folder = RUNS / name
    if not (folder / LOCK).is_file():
        sys.exit(f"error: {folder}/dvc.lock not found: no run kept as {name!r} (kept: "
                 f"{sorted(p.name for p in RUNS.glob('*/dvc.lock'))})")
    for path in tracked_outputs(folder / LOCK):
        if path.exists():
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    for path in [LOCK, *tracked_outputs(folder / LOCK)]:
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
