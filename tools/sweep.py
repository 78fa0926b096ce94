"""Collect DVC experiments (e.g. a ``prune.ratio`` sweep) into reports/sweep.{md,csv} and reports/pareto.png.

Usage, after ``dvc exp run -S prune.ratio=0.3`` (one per ratio, or ``--queue`` and ``dvc queue start``)::

    python tools/sweep.py                    # the experiments of HEAD (what `dvc exp show` lists)
    python tools/sweep.py --all-commits      # any `dvc exp show` option selects others
    python tools/sweep.py --like cmp-0.5-s42 --out reports/comparison --title "..."   # a profile's, in their own folder

Each run is collected once, under the experiment that produced it. An experiment in the workspace
starts from the outputs the workspace holds (the commit's, or the previous experiment's) and reruns
only what its params and targets change, so it also shows evaluate metrics it did not produce.
Such an entry is identical, latencies included, to the entry of the earlier experiment (or commit)
that did produce it: :func:`produced_only` keeps each entry in the earliest record that holds it,
and the point takes that record's pruning seed and setup. Across chunks (see below) a new point that
repeats a kept point's measurements is that kept run.

Each experiment (and the workspace) contributes one point per (task, strategy, fine-tuning seed):
test MCC and loss from its evaluate metrics, the batch-1/batch-32 speed-up measured against the
unpruned architecture in the same process, and the MAC-proportional estimates. A point's ratio is the one its model
was pruned at (``prune_ratio`` in the metrics), not the experiment's parameter: an experiment that
reran only some stages still holds the other stages' older outputs. The unpruned model has no
ratio and is the reference of every ratio. Points with the same ratio are averaged (seeds, whether
from the ``seeds`` param or from separate experiments). Only experiments whose other params match the
workspace's are collected (see :data:`VARIED`), so a profile run is never averaged into a sweep.

Experiment refs live in one clone, so a sweep run in chunks keeps its points in
``reports/sweep_points.csv`` (one row per run, with the commit whose code produced it and a digest
of the shared setup): each call adds the experiments' points to the file's, a new point replacing
an old one of the same key, and the tables are built from all of them. Points of another setup are
refused; delete the file to start a sweep afresh.

When ``reports/ranking/ranking.csv`` (the ``ranking`` stage) is present, the sweep also reports how
well its pre-fine-tuning probe score agrees with the fine-tuned MCC at the points both have.
"""

from __future__ import annotations

import copy
import hashlib
import json
import subprocess
import sys
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import spearmanr

from mcap.figures import saved_figure
from mcap.report import mean_std, row_order
from mcap.strategies import get_strategy, known_strategies

EVALUATE_PREFIX = "reports/evaluate/"
RANKING = Path("reports/ranking/ranking.csv")
POINTS = Path("reports/sweep_points.csv")  # under --out DIR: DIR/sweep_points.csv
SWEEP_TITLE = "Pruning-ratio sweep"  # the heading of sweep.md unless --title gives another
POINT_KEY = ["ratio", "pruning_seed", "task", "strategy", "seed"]
# The ranking stage scores mcap's δ of the workspace's prune.ratio at every ratio, while each sweep point's mcap
# model was pruned with δ trained for its own ratio: those points do not correspond.
RATIO_DEPENDENT_RANKINGS = {"mcap", "mcap_iterative"}
LEARNED = ("mcap", "mcap_iterative")  # the strategies compared with every other one (comparison_markdown)
UNPRUNED = "none"  # the strategy whose model has no pruning ratio
# What a sweep's experiments may vary; every other param (data, training, model...) is their shared setup.
VARIED = ("seed", "prune.ratio", "prune.strategies", "mcap.strategies", "seeds", "tasks", "transfer", "explain")
# Params that one strategy alone reads stay out of the shared setup, so that adding such a strategy keeps the other
# strategies' points comparable; they are recorded with that strategy's points instead (one value per sweep).
STRATEGY_PARAMS = {"mcap_iterative": ("mcap.iterative_step", "mcap.iterative_passes")}


def experiment_records(shown: object) -> Iterator[dict]:
    """Every {params, metrics} record in ``dvc exp show --json`` output, whatever its nesting."""
    if isinstance(shown, dict):
        data = shown.get("data")
        if isinstance(data, dict) and "params" in data and "metrics" in data:
            yield {"name": shown.get("name") or shown.get("rev"), "timestamp": data.get("timestamp"),
                   "params": data["params"], "metrics": data["metrics"]}
        for value in shown.values():
            yield from experiment_records(value)
    elif isinstance(shown, list):
        for value in shown:
            yield from experiment_records(value)


def produced_only(records: list[dict]) -> list[dict]:
    """The records (same order) holding only the evaluate entries they produced: an entry that an earlier record
    (by timestamp; the workspace, which has none, is the latest) holds identically was inherited from it."""
    def age(index: int) -> tuple[bool, str, int]:
        stamp = records[index].get("timestamp")
        return stamp is None, stamp or "", index

    seen, produced = set(), [dict(record) for record in records]
    for index in sorted(range(len(records)), key=age):
        own = {}
        for path, entry in records[index]["metrics"].items():
            fingerprint = (path, json.dumps(entry, sort_keys=True))
            if path.startswith(EVALUATE_PREFIX) and fingerprint in seen:
                continue
            seen.add(fingerprint)
            own[path] = entry
        produced[index]["metrics"] = own
    return produced


def _params(record: dict) -> dict:
    """The experiment's params.yaml as `dvc exp show --json` gives it."""
    return record["params"].get("params.yaml", {}).get("data", {})


def setup(record: dict) -> dict:
    """The experiment's params minus the :data:`VARIED` and :data:`STRATEGY_PARAMS` ones."""
    params = copy.deepcopy(_params(record))
    for dotted in VARIED + sum(STRATEGY_PARAMS.values(), ()):
        *parents, name = dotted.split(".")
        section = params
        for parent in parents:
            section = section.get(parent, {})
        section.pop(name, None)
    return params


def same_setup(records: list[dict], like: str | None = None) -> tuple[list[dict], list[str]]:
    """The records with the setup of experiment ``like`` (default: the first, the workspace), and the names of the others.

    Ratios are compared only under one setup: an experiment that also changed e.g. the training data or
    epochs (a profile run) would otherwise be averaged with the sweep's points of the same ratio.
    """
    kept, skipped = [], []
    named = [record for record in records if record["name"] == like] if like else records[:1]
    if like and not named:
        raise SystemExit(f"error: no experiment named {like!r} in `dvc exp show --json`")
    reference = setup(named[0]) if named else None
    for record in records:
        (kept if setup(record) == reference else skipped).append(record)
    return kept, [str(record["name"]) for record in skipped]


def points(records: list[dict]) -> list[dict]:
    """One row per (ratio, pruning seed, task, strategy, fine-tuning seed) with the numbers the sweep plots.

    Give it :func:`produced_only`'s records, so that a stage an experiment did not rerun is not counted under that
    experiment's pruning seed; a run that still appears twice (a seed two experiments share) is counted once.
    Metrics written before ``prune_ratio`` was recorded are skipped: their ratio is unknown.
    """
    rows = {}
    for record in records:
        pruning_seed = _params(record).get("seed")
        for path, entry in record["metrics"].items():
            metrics = entry.get("data") if path.startswith(EVALUATE_PREFIX) and "/seed-" in path else None
            if not metrics:
                continue
            pair, seed = path.removeprefix(EVALUATE_PREFIX).removesuffix(".json").split("/seed-")
            task, strategy = pair.split("-", 1)
            if strategy != UNPRUNED and "prune_ratio" not in metrics:
                continue
            ratio = metrics.get("prune_ratio")  # the unpruned model's is null, which DVC leaves out
            row = {"ratio": ratio, "pruning_seed": pruning_seed, "seed": int(seed), "task": task, "strategy": strategy,
                   "mcc": metrics["test"]["mcc"], "loss": metrics["test"]["loss"],
                   "device": metrics.get("device_name"), "threads": metrics.get("threads")}  # the speed-ups depend on both
            row.update({f"speedup_{batch}": timing["median"] for batch, timing in metrics.get("speedup", {}).items()})
            row.update({f"mac_estimate_{batch}": estimate["speedup"] for batch, estimate in metrics["mac_estimate"].items()})
            if strategy in STRATEGY_PARAMS:
                row["strategy_params"] = json.dumps({key: _param(record, key) for key in STRATEGY_PARAMS[strategy]})
            rows.setdefault(tuple(row[key] for key in POINT_KEY), row)
    return list(rows.values())


def _param(record: dict, dotted: str) -> object:
    section = _params(record)
    for name in dotted.split("."):
        section = section.get(name, {}) if isinstance(section, dict) else {}
    return section


def setup_digest(record: dict) -> str:
    """A short digest of an experiment's shared setup: points with different digests do not belong together."""
    return hashlib.sha256(json.dumps(setup(record), sort_keys=True).encode()).hexdigest()[:12]


def _measured(frame: pd.DataFrame) -> pd.Series:
    """Per point, its task, strategy, ratio and fine-tuning seed with its measurements at the points file's precision:
    two points that agree on all of them are one run (timings never repeat to six digits)."""
    measures = sorted(c for c in frame.columns if c == "mcc" or c == "loss" or c.startswith("speedup_"))
    return frame.apply(lambda row: json.dumps([row["task"], row["strategy"], _number(row["ratio"]), int(row["seed"]),
                                               *(_number(row[m]) for m in measures)]), axis=1)


def _number(value: object) -> str | None:
    return None if value is None or pd.isna(value) else f"{float(value):.6g}"


def merged_points(kept: pd.DataFrame | None, new: list[dict]) -> pd.DataFrame:
    """The kept points plus the new ones; a new point replaces a kept one with the same key, and a new point that
    repeats a kept point's measurements is that run, inherited from an earlier chunk's experiment: not added."""
    fresh = pd.DataFrame(new)
    if kept is None or kept.empty:
        return fresh
    if set(kept["setup"]) != set(fresh["setup"]):
        raise SystemExit(f"error: the points file holds points of setup {sorted(set(kept['setup']))}, the experiments have "
                         f"{sorted(set(fresh['setup']))}; delete it to start a new sweep")
    fresh = fresh[~_measured(fresh).isin(set(_measured(kept)))]
    merged = pd.concat([kept, fresh], ignore_index=True)
    merged["ratio"] = merged["ratio"].astype(object).where(merged["ratio"].notna(), None)
    if "strategy_params" in merged and (merged.groupby("strategy")["strategy_params"].nunique() > 1).any():
        raise SystemExit("error: a strategy's own params (STRATEGY_PARAMS) differ between the points file and the "
                         "experiments; collect them into another --out folder")
    return merged.drop_duplicates(subset=POINT_KEY, keep="last", ignore_index=True)


def point_rows(frame: pd.DataFrame) -> list[dict]:
    """Rows of the points file as :func:`points` gives them (the unpruned model's ratio is None)."""
    rows = frame.to_dict("records")
    for row in rows:
        row["ratio"] = None if row["ratio"] is None or pd.isna(row["ratio"]) else float(row["ratio"])
    return rows


def aggregate(rows: list[dict]) -> dict[tuple[str, str, float], dict[str, tuple[float, float, int]]]:
    """(task, strategy, ratio) -> {measure: (mean, sample std, runs)} over seeds (std NaN for one run)."""
    grouped: dict[tuple, list[dict]] = defaultdict(list)
    for row in rows:
        grouped[(row["task"], row["strategy"], row["ratio"])].append(row)
    summary = {}
    for key, group in grouped.items():
        measures = [m for m in group[0] if m not in (*POINT_KEY, "commit", "setup", "strategy_params")]
        summary[key] = {m: (*mean_std([r[m] for r in group if m in r and not pd.isna(r[m])]), len(group))
                        for m in measures}
    return summary


def summary_frame(summary: dict) -> pd.DataFrame:
    """The summary as rows (task, strategy, ratio, metric, mean, std, n), for reports/sweep.csv."""
    return pd.DataFrame([{"task": task, "strategy": strategy, "ratio": ratio, "metric": metric, "mean": mean, "std": std,
                          "n": runs}
                         for (task, strategy, ratio), values in summary.items()
                         for metric, (mean, std, runs) in values.items()])


def ranking_agreement(summary: dict, ranking: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, tuple[float, int]]]:
    """Points with both a probe score (mean over pruning seeds) and a fine-tuned MCC (mean over runs), and per
    task the Spearman correlation of the two with its number of points."""
    probe = ranking.groupby(["task", "strategy", "ratio"])["score"].mean()
    rows = [{"task": task, "strategy": strategy, "ratio": ratio, "probe_score": probe[(task, strategy, ratio)],
             "finetuned_mcc": values["mcc"][0]}
            for (task, strategy, ratio), values in summary.items()
            if ratio is not None and strategy not in RATIO_DEPENDENT_RANKINGS and (task, strategy, ratio) in probe.index]
    frame = pd.DataFrame(rows, columns=["task", "strategy", "ratio", "probe_score", "finetuned_mcc"])
    frame = frame.sort_values(["task", "strategy", "ratio"], ignore_index=True)
    correlations = {task: (_spearman(group["probe_score"], group["finetuned_mcc"]), len(group))
                    for task, group in frame.groupby("task", sort=False) if len(group) > 2}
    return frame, correlations


def _spearman(first: pd.Series, second: pd.Series) -> float:
    """Spearman's rho; NaN where either side is constant (a task the CPU default does not learn: MCC 0 everywhere)."""
    if first.nunique() < 2 or second.nunique() < 2:
        return float("nan")
    return float(spearmanr(first, second).statistic)


def agreement_markdown(frame: pd.DataFrame, correlations: dict[str, tuple[float, int]]) -> str:
    lines = ["## Pre-fine-tuning probe score vs fine-tuned MCC", "",
             ("The `ranking` stage's probe score of each head strategy's ranking (mean over pruning seeds) against the "
              "fine-tuned test MCC of the same strategy and ratio (mean over runs). mcap and mcap_iterative are left out: "
              "the stage scores the workspace's controller at every ratio, while each of their points here was pruned "
              "by a controller trained for its ratio."), ""]
    lines += [f"* {task}: Spearman {rho:.2f} over {n} points." if not np.isnan(rho) else
              f"* {task}: not defined over {n} points: one side is the same at every point." for task, (rho, n) in
              correlations.items()]
    lines += ["", "| Task | Strategy | Ratio | Probe score | Fine-tuned MCC |", "|---|---|---|---|---|"]
    lines += [f"| {row.task} | {row.strategy} | {row.ratio:g} | {row.probe_score:.3f} | {row.finetuned_mcc:.3f} |"
              for row in frame.itertuples()]
    return "\n".join(lines)


def _cell(values: dict, measure: str, digits: int) -> str:
    if measure not in values:
        return "–"
    mean, std, runs = values[measure]
    return f"{mean:.{digits}f} ± {std:.{digits}f}" if runs > 1 else f"{mean:.{digits}f}"


def _speedup_cell(values: dict) -> str:
    if not values:
        return "–"
    return (f"{_cell(values, 'speedup_batch_1', 2)} / {_cell(values, 'speedup_batch_32', 2)} "
            f"({_cell(values, 'mac_estimate_batch_1', 2)} / {_cell(values, 'mac_estimate_batch_32', 2)})")


def label(strategy: str) -> str:
    """The strategy's Table I label; its name where the strategy is no longer in the code."""
    return get_strategy(strategy).label if strategy in known_strategies() else strategy


def _pruned_strategies(summary: dict, task: str | None = None) -> list[str]:
    """The strategies with a pruning ratio (of ``task``, or of any task), in Table I's order."""
    return row_order({s: label(s) for t, s, r in summary if r is not None and task in (None, t)})


def provenance_markdown(points_frame: pd.DataFrame) -> str:
    """Which commit's code produced how many of the points."""
    counts = points_frame.groupby("commit", sort=False).size()
    own = points_frame.dropna(subset=["strategy_params"]) if "strategy_params" in points_frame else points_frame.iloc[:0]
    return ("Points by code commit: " + ", ".join(f"`{commit}` ({n} runs)" for commit, n in counts.items()) + "."
            + "".join(f" {strategy}'s own params: " + ", ".join(f"`{key}` {value}" for key, value in json.loads(values).items()) + "."
                      for strategy, values in own.groupby("strategy")["strategy_params"].first().items()))


def seeds_markdown(points_frame: pd.DataFrame) -> str:
    """Per task, strategy and ratio: the pruning/controller seeds and fine-tuning seeds behind each cell."""
    lines = ["## Seeds behind each cell", "", "| Task | Strategy | Ratio | Pruning/controller seeds | Fine-tuning seeds | Runs |",
             "|---|---|---|---|---|---|"]
    frame = points_frame.assign(ratio_label=points_frame["ratio"].map(lambda r: "–" if r is None or pd.isna(r) else f"{r:g}"))
    for (task, strategy, ratio), group in frame.groupby(["task", "strategy", "ratio_label"], sort=True):
        pruning = sorted({int(s) for s in group["pruning_seed"].dropna()})
        lines.append(f"| {task} | {strategy} | {ratio} | {', '.join(map(str, pruning))} | "
                     f"{', '.join(map(str, sorted(set(group['seed']))))} | {len(group)} |")
    return "\n".join(lines)


SETUP_SHOWN = ("model.name_or_path", "data.max_train_examples", "data.max_eval_examples", "data.split", "train.epochs",
               "train.learning_rates")


def setup_markdown(record: dict) -> str:
    """The shared setup's main params, as the experiments' params.yaml gives them."""
    return "Shared setup: " + ", ".join(f"`{dotted}` {_param(record, dotted)}" for dotted in SETUP_SHOWN) + "."


def sweep_markdown(summary: dict, title: str = SWEEP_TITLE) -> str:
    """Per task, one table per measure (MCC, loss, speed-up), a column per ratio, a row per strategy."""
    tasks = list(dict.fromkeys(task for task, _, _ in summary))
    ratios = sorted({ratio for _, _, ratio in summary if ratio is not None})
    parts = [f"# {title}", "",
             ("Collected from `dvc exp show --json` by `python tools/sweep.py` (every run: `sweep_points.csv`); "
              "mean ± std over all runs of a cell, pruning/controller seeds and fine-tuning seeds together. "
             "Speed-up: unpruned / pruned forward time, timed interleaved in one process (batch 1 / batch 32); "
             "in brackets the MAC-proportional estimates at the timed shapes (not bounds). The figure shows the tasks "
             "swept over more than one ratio."), "",
             "![MCC and speed-up vs pruning ratio](pareto.png)", ""]
    header = "| Strategy | " + " | ".join(f"r={r:g}" for r in ratios) + " |\n|" + "---|" * (len(ratios) + 1)
    measures = (("Test MCC", lambda values: _cell(values, "mcc", 3)), ("Test loss", lambda values: _cell(values, "loss", 3)),
                ("Speed-up batch 1 / batch 32 (MAC estimate batch 1 / batch 32)", _speedup_cell))
    for task in tasks:
        strategies = _pruned_strategies(summary, task)
        parts += [f"## {task}", ""]
        reference = summary.get((task, UNPRUNED, None))
        if reference:
            parts += [(f"Unpruned reference (no ratio): MCC {_cell(reference, 'mcc', 3)}, "
                       f"loss {_cell(reference, 'loss', 3)}, {reference['mcc'][2]} run(s)."), ""]
        for measure_title, cell in measures:
            parts += [f"### {task}: {measure_title}", "", header]
            parts += [f"| {label(strategy)} | "
                      + " | ".join(cell(summary.get((task, strategy, r), {})) for r in ratios) + " |" for strategy in strategies]
            parts.append("")
    return "\n".join(parts)


def verdict(difference: float, spread: float) -> str:
    """"above"/"below" only where the difference of means exceeds ``spread``, else "within noise"."""
    if np.isnan(spread):
        return "not judged (one run)"
    if abs(difference) <= spread:
        return "within noise"
    return "above" if difference > 0 else "below"


def comparison_markdown(summary: dict, subject: str) -> str:
    """Per task and ratio where ``subject`` ran: its mean test MCC against every other strategy's at that ratio and
    the unpruned model's, each difference judged against the larger of the two cells' stds."""
    lines = [f"## {subject} against the other strategies", "",
             (f"Mean test MCC of {subject} minus the other's; 'above' or 'below' only where the difference exceeds the "
              "larger of the two cells' std (over all their runs: pruning/controller and fine-tuning seeds), else "
              "'within noise'."), "",
             f"| Task | Ratio | Other | {subject} MCC | Other MCC | Difference | Larger std | Reading |",
             "|---|---|---|---|---|---|---|---|"]
    for task, strategy, ratio in sorted((k for k in summary if k[1] == subject and k[2] is not None), key=str):
        ours = summary[(task, strategy, ratio)]["mcc"]
        others = [(s, summary[(task, s, ratio)]) for s in _pruned_strategies(summary, task)
                  if s != subject and (task, s, ratio) in summary]
        if (task, UNPRUNED, None) in summary:
            others.append((UNPRUNED, summary[(task, UNPRUNED, None)]))
        for other, values in others:
            theirs = values["mcc"]
            difference, spread = ours[0] - theirs[0], float(np.max([ours[1], theirs[1]]))  # NaN where either ran once
            lines.append(f"| {task} | {ratio:g} | {other} | {_cell({'mcc': ours}, 'mcc', 3)} (n={ours[2]}) | "
                         f"{_cell({'mcc': theirs}, 'mcc', 3)} (n={theirs[2]}) | {difference:+.3f} | "
                         f"{'–' if np.isnan(spread) else f'{spread:.3f}'} | "
                         f"{verdict(difference, spread)} |")
    return "\n".join(lines)


def plot_pareto(summary: dict, path: Path) -> None:
    """Per task swept over more than one ratio: MCC vs ratio per strategy, and measured batch-32
    speed-up vs ratio with the MAC-proportional estimate; a strategy has the same colour in every panel."""
    ratios_of = defaultdict(set)
    for task, _, ratio in summary:
        if ratio is not None:
            ratios_of[task].add(ratio)
    tasks = [task for task, ratios in ratios_of.items() if len(ratios) > 1] or list(ratios_of)
    colours = {strategy: f"C{index % 10}" for index, strategy in enumerate(_pruned_strategies(summary))}
    with saved_figure(path, len(tasks), 2, figsize=(10, 3.6 * len(tasks)), squeeze=False) as (_fig, axes):
        for (mcc_ax, speed_ax), task in zip(axes, tasks):
            for strategy in _pruned_strategies(summary, task):
                ratios = sorted(r for t, s, r in summary if t == task and s == strategy)
                values = [summary[(task, strategy, r)] for r in ratios]
                mcc_ax.errorbar(ratios, [v["mcc"][0] for v in values], yerr=[v["mcc"][1] for v in values], marker="o",
                                label=strategy, capsize=2, color=colours[strategy])
                if strategy.startswith("head") or strategy in LEARNED:
                    speed_ax.plot(ratios, [v.get("speedup_batch_32", (np.nan,))[0] for v in values], marker="o",
                                  label=strategy, color=colours[strategy])
            reference = summary.get((task, UNPRUNED, None))
            if reference:
                mcc_ax.axhline(reference["mcc"][0], color="gray", linestyle=":", label="unpruned")
            estimate_ratios = sorted(r for t, s, r in summary if t == task and s == "head_random")
            if estimate_ratios:
                speed_ax.plot(estimate_ratios,
                              [summary[(task, "head_random", r)]["mac_estimate_batch_32"][0] for r in estimate_ratios],
                              "k--", label="MAC estimate")
            mcc_ax.set(title=f"{task}: test MCC vs pruning ratio", xlabel="prune.ratio", ylabel="MCC")
            speed_ax.set(title=f"{task}: measured speed-up (batch 32) vs ratio", xlabel="prune.ratio", ylabel="speed-up ×")
            mcc_ax.legend(fontsize=7)
            speed_ax.legend(fontsize=7)


def main() -> None:
    """``python tools/sweep.py [--like EXPERIMENT] [--out DIR] [--title TEXT] [dvc exp show options]``; by default
    the experiments of HEAD with the workspace's setup, with ``--like`` those with that experiment's setup (a
    profile's sweep), written to reports/ or DIR."""
    options = sys.argv[1:]
    like, out = _option(options, "--like"), Path(_option(options, "--out") or "reports")
    title = _option(options, "--title") or SWEEP_TITLE
    shown = json.loads(subprocess.run(["dvc", "exp", "show", "--json", *options], capture_output=True, text=True,
                                      check=True).stdout)
    records, skipped = same_setup(produced_only(list(experiment_records(shown))), like)
    if skipped:
        print(f"left out (params other than {', '.join(VARIED)} differ from the workspace's): {', '.join(skipped)}",
              file=sys.stderr)
    new = points(records)
    if not new:
        sys.exit("error: no experiment with evaluate metrics found in `dvc exp show --json`")
    commit = subprocess.run(["git", "rev-parse", "--short=10", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    for row in new:
        row.update(commit=commit, setup=setup_digest(records[0]))  # records[0] has the reference setup
    out.mkdir(parents=True, exist_ok=True)
    points_path = out / POINTS.name
    frame = merged_points(pd.read_csv(points_path) if points_path.is_file() else None, new)
    frame.to_csv(points_path, index=False, float_format="%.6g")
    rows = point_rows(frame)
    summary = aggregate(rows)
    markdown = (sweep_markdown(summary, title) + "\n" + setup_markdown(records[0]) + " " + provenance_markdown(frame)
                + "\n\n" + seeds_markdown(frame) + "\n")
    for subject in LEARNED:
        if any(strategy == subject for _, strategy, _ in summary):
            markdown += "\n" + comparison_markdown(summary, subject) + "\n"
    if RANKING.is_file():
        markdown += "\n" + agreement_markdown(*ranking_agreement(summary, pd.read_csv(RANKING)))
    (out / "sweep.md").write_text(markdown)
    summary_frame(summary).to_csv(out / "sweep.csv", index=False, float_format="%.6g")
    plot_pareto(summary, out / "pareto.png")
    print(f"{out}/sweep.md, sweep.csv, pareto.png, {points_path.name}: {len(rows)} points "
          f"({len(new)} from these experiments), ratios {sorted({r['ratio'] for r in rows} - {None})}")


def _option(options: list[str], name: str) -> str | None:
    """Remove ``name VALUE`` from ``options`` and return VALUE (None where absent)."""
    if name not in options:
        return None
    at = options.index(name)
    if at + 1 == len(options):
        raise SystemExit(f"error: {name} needs a value")
    value = options[at + 1]
    del options[at:at + 2]
    return value


if __name__ == "__main__":
    main()
