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

Runs made with another ``seed`` (the pruning seed: structured_gradient's probe, structured_mcap's controller, the
classifier head every model starts from) are pooled with those of the first: each row then counts every pruning
seed × fine-tuning seed run in ``n``, its ± is their standard deviation and its ΔMCC the difference to the unpruned
models of the same seeds. Before fine-tuning, a row's budget is its run's ``prune.ratio`` (the MAC fraction a
strategy reaches varies a little with the seed), and its MAC ratio the mean of those reached.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from mcap.errors import McapError
from mcap.structured_report import COLUMNS, plot_pareto, render_markdown, structured_table

REPORTS = Path("reports")
KEY = ["task", "strategy", "mode", "budget"]  # a row of the merged table
POOLED = ["speedup_torch_b32", "speedup_onnx_b32", "speedup_torch_b1", "speedup_onnx_b1", "mcc_without_tuning_mean",
          "mcc_without_rearrangement_mean", "mac_ratio", "mcc_delta"]  # averaged over the pruning seeds, weighted by their runs


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


def kept_rows(run: Path) -> pd.DataFrame:
    """A kept run's rows with its pruning ``seed`` and each row's budget (before fine-tuning: the run's
    ``prune.ratio``; otherwise the MAC ratio)."""
    params = yaml.safe_load((run / "params.yaml").read_text())
    frame = pd.read_csv(run / "structured.csv", keep_default_na=False, na_values=[""]).reindex(columns=COLUMNS)
    frame["mode"] = frame["mode"].fillna("")
    frame["mac_ratio"] = frame["mac_ratio"].round(9)
    frame["budget"] = frame["mac_ratio"].where(frame["mode"] != "before", float(params["prune"]["ratio"]))
    frame["seed"] = int(params["seed"])
    return frame


def pooled(rows: pd.DataFrame) -> dict:
    """One row from the rows of several pruning seeds: n, mean and sample standard deviation over all their runs
    (from each seed's n, mean and std), and the other columns averaged with the runs as weights."""
    n = rows["n"].to_numpy(dtype=float)
    means = rows["mcc_mean"].to_numpy(dtype=float)
    mean = float(np.average(means, weights=n))
    within = np.nan_to_num(rows["mcc_std"].to_numpy(dtype=float)) ** 2 * (n - 1)
    total = n.sum()
    std = float(np.sqrt((within.sum() + (n * (means - mean) ** 2).sum()) / (total - 1))) if total > 1 else float("nan")
    row = {**rows.iloc[0].to_dict(), "n": int(total), "mcc_mean": mean, "mcc_std": std}
    for column in POOLED:
        values = rows[column].to_numpy(dtype=float)
        known = ~np.isnan(values)
        row[column] = float(np.average(values[known], weights=n[known])) if known.any() else float("nan")
    return row


def rearranged(rows: pd.DataFrame) -> pd.Series:
    """Which rows rearranged the masks after fine-tuning: those that record the MCC without rearrangement."""
    return rows["mcc_without_rearrangement_mean"].notna()


def same_method(rows: pd.DataFrame) -> pd.DataFrame:
    """The rows of one (task, strategy, mode, budget) that were made the same way: where some pruning seed's row
    rearranged the masks, only such rows, since rearrangement changes which units go and a pooled row must not mix
    the two methods."""
    return rows[rearranged(rows)] if rearranged(rows).any() else rows


def merged_table(folder: Path) -> pd.DataFrame:
    """Every kept run's rows, each (task, strategy, mode, budget) once: from the first run that has it for each
    pruning seed, pooled over the seeds whose rows were made the same way (``same_method``)."""
    runs = sorted(path.parent for path in folder.glob("*/structured.csv"))
    if not runs:
        raise McapError(f"{folder}: no runs kept; `python tools/structured_sweep.py add {folder}` after each run")
    frame = pd.concat([kept_rows(run) for run in runs], ignore_index=True).drop_duplicates([*KEY, "seed"])
    return structured_table([pooled(same_method(rows)) for _key, rows in frame.groupby(KEY, sort=False)])


def pruning_seeds(folder: Path) -> list[int]:
    """The pruning seeds of the kept runs, in order."""
    return sorted({int(yaml.safe_load((run / "params.yaml").read_text())["seed"])
                   for run in (path.parent for path in folder.glob("*/structured.csv"))})


MEASURED_ON = re.compile(r"Measured on (CPU [^,.]*?) with")


def machine_of(run: Path) -> str:
    """`` (<CPU>)`` as the run's report names the machine that timed it ('' where it names none)."""
    match = MEASURED_ON.search((run / "structured.md").read_text())
    return f" ({match.group(1)})" if match else ""


def setup_of(folder: Path) -> str:
    """The setup paragraph of the run with the most rows, and which commit produced each run."""
    runs = sorted(path.parent for path in folder.glob("*/structured.csv"))
    widest = max(runs, key=lambda run: len(pd.read_csv(run / "structured.csv")))  # first of the widest in name order
    setup = (widest / "structured.md").read_text().split("\n\n")[1]
    machines = {run: machine_of(run) for run in runs}
    mixed = len(set(machines.values())) > 1  # then name each run's, since pooled speed-ups mix machines
    commits = ", ".join(f"{run.name}: `{(run / 'commit').read_text().strip()[:10]}`{machines[run] if mixed else ''}"
                        for run in runs)
    seeds = pruning_seeds(folder)
    with_rearrangement = [run.name for run in runs if rearranged(kept_rows(run)).any()]
    rearrangement = (f" Runs {', '.join(with_rearrangement)} rearranged the Fisher masks after fine-tuning on each "
                     "layer's Fisher block (Kwon et al. Sec. 4.2; the column MCC without rearrangement or tuning); "
                     "the others did not, and a row pools only the runs made the same way." if with_rearrangement else "")
    pooling = (f" Rows pool the runs of pruning seeds {', '.join(map(str, seeds))} (`seed`) where they have them: n "
               "counts pruning × fine-tuning seeds, ± is the std over all of them." if len(seeds) > 1 else "")
    return (f"{setup}\n\nOne run per `prune.ratio` (the before-fine-tuning rows), each kept with its params and lock "
            f"beside this file; a row in several runs of one pruning seed is shown from the first.{pooling}{rearrangement} "
            + ("Timings come from different machines, named per run below (the setup above names the widest run's); "
               "a row pooled over runs of two machines averages their speed-ups. " if mixed else "")
            + f"Commits by run: {commits}.")


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
