"""Merge the structured comparisons of several runs, one per ``prune.ratio``, into one, kept in reports/runs/<name>/.

The structured_report stage shows the strategies pruned *before* fine-tuning at one ``prune.ratio`` and the
whole ``post_prune.mac_ratios`` sweep *after* it. A sweep of the first mode is one run per ratio
(``profiles/structured.args``); after each, ``add`` keeps the run's table and the params and lock that
produced it, and ``render`` writes the merged structured.{md,csv,png} beside them::

    python tools/structured_sweep.py add reports/runs/structured       # after each `dvc exp run ... structured_report`
    python tools/structured_sweep.py render reports/runs/structured

A run is kept as ``ratio-<prune.ratio>/``, or under a name given after the folder (``add FOLDER NAME``: e.g. a
run that adds a ranking to an after-fine-tuning sweep kept before, named to sort after it). Rows that do not
depend on the ratio (the unpruned model, every after-fine-tuning budget) are the same in every run (DVC reruns
none of their stages) and are kept once, from the first run (in name order) that has them; the setup paragraph
is that of the run with the most rows (the one that swept every after-fine-tuning budget: a run made for one more
``prune.ratio`` may cut post_prune to a single budget).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import yaml

from mcap.errors import McapError
from mcap.structured_report import plot_pareto, render_markdown, structured_table

REPORTS = Path("reports")
KEY = ["task", "strategy", "mode", "mac_ratio"]


def add_run(folder: Path, name: str | None = None) -> Path:
    """Keep the workspace's reports/structured.csv, params.yaml and dvc.lock as ``folder/<name>/`` (default
    ``ratio-<prune.ratio>``)."""
    table = REPORTS / "structured.csv"
    if not table.is_file():
        raise McapError(f"{table}: missing; run the structured_report stage first")
    ratio = yaml.safe_load(Path("params.yaml").read_text())["prune"]["ratio"]
    run = folder / (name or f"ratio-{ratio:g}")
    run.mkdir(parents=True, exist_ok=True)
    for path in (table, REPORTS / "structured.md", Path("params.yaml"), Path("dvc.lock")):
        shutil.copy(path, run / path.name)
    commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    (run / "commit").write_text(commit + "\n")
    return run


def merged_table(folder: Path) -> pd.DataFrame:
    """Every kept run's rows, each (task, strategy, mode, MAC ratio) once."""
    runs = sorted(folder.glob("*/structured.csv"))
    if not runs:
        raise McapError(f"{folder}: no runs kept; `python tools/structured_sweep.py add {folder}` after each run")
    frame = pd.concat([pd.read_csv(run, keep_default_na=False, na_values=[""]) for run in runs], ignore_index=True)
    frame["mode"] = frame["mode"].fillna("")
    frame["mac_ratio"] = frame["mac_ratio"].round(9)
    return structured_table(frame.drop_duplicates(KEY).to_dict("records"))


def setup_of(folder: Path) -> str:
    """The setup paragraph of the run with the most rows, and which commit produced each run."""
    runs = sorted(path.parent for path in folder.glob("*/structured.csv"))
    widest = max(runs, key=lambda run: len(pd.read_csv(run / "structured.csv")))  # first of the widest in name order
    setup = (widest / "structured.md").read_text().split("\n\n")[1]
    commits = ", ".join(f"{run.name}: `{(run / 'commit').read_text().strip()[:10]}`" for run in runs)
    return (f"{setup}\n\nOne run per `prune.ratio` (the before-fine-tuning rows), each kept with its params and lock "
            f"beside this file; a row in several runs is shown from the first. Commits by run: {commits}.")


def render(folder: Path) -> None:
    table = merged_table(folder)
    table.to_csv(folder / "structured.csv", index=False, float_format="%.6g")
    (folder / "structured.md").write_text(render_markdown(table, setup_of(folder)))
    plot_pareto(table, folder / "structured.png")


def main() -> None:
    if not (len(sys.argv) == 3 or (len(sys.argv) == 4 and sys.argv[1] == "add")) or sys.argv[1] not in ("add", "render"):
        sys.exit("usage: python tools/structured_sweep.py add FOLDER [NAME] | render FOLDER")
    folder = Path(sys.argv[2])
    try:
        if sys.argv[1] == "add":
            print(f"{add_run(folder, *sys.argv[3:])}: kept")
        else:
            render(folder)
            print(f"{folder}/structured.{{md,csv,png}}: written")
    except McapError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
