"""The structured-pruning comparison: quality against measured speed-up for each MAC budget, pruning before
fine-tuning (the prune stage's structured strategies) and after it (the post_prune stages), beside the head-only
strategies; reports/structured.{md,csv} and the Pareto figure."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from mcap.figures import saved_figure
from mcap.grid import model_name
from mcap.report import load_runs, mean_std

KINDS = ("none", "head", "structured")  # unstructured sparsity gives no dense speed-up: not on these axes
COLUMNS = ["task", "strategy", "mode", "mac_ratio", "n", "mcc_mean", "mcc_std", "mcc_delta", "speedup_torch_b32",
           "speedup_onnx_b32", "speedup_torch_b1", "speedup_onnx_b1", "mcc_without_tuning_mean",
           "mcc_without_rearrangement_mean"]
# After fine-tuning, the MCC without a step of the method: column stem -> the budget record it is read from
ABLATIONS = {"mcc_without_tuning": "test_without_tuning", "mcc_without_rearrangement": "test_without_rearrangement"}
# (speed-up at least, MCC points below the unpruned model at most): the targets the comparison is read against
TARGETS = ((1.5, 1.0), (2.0, 3.0))
RUNTIMES = {"torch": "PyTorch", "onnx": "onnxruntime"}
LEARNED_MCC = 0.1  # an unpruned model below this test MCC has not learnt its task: losses against it mean nothing


def _speedup(speedups: dict, name: str) -> float:
    return speedups[name]["median"] if name in speedups else math.nan


def _aggregate(runs: list[dict], unpruned_mcc: list[float]) -> dict:
    """Mean ± std of the runs' test MCC over seeds, its difference to the unpruned model of the same seeds, and
    the mean of each measured speed-up (keys of ``run["speedups"]``)."""
    mcc, std = mean_std([run["mcc"] for run in runs])
    row = {"n": len(runs), "mcc_mean": mcc, "mcc_std": std, "mcc_delta": mcc - float(np.mean(unpruned_mcc))}
    for column in ("speedup_torch_b32", "speedup_onnx_b32", "speedup_torch_b1", "speedup_onnx_b1"):
        row[column] = float(np.mean([run["speedups"][column] for run in runs]))
    for name in ABLATIONS:
        values = [run[name] for run in runs if run.get(name) is not None]
        row[f"{name}_mean"] = float(np.mean(values)) if values else math.nan
    return row


def after_finetuning_rows(run_dirs: Mapping[str, Path], strategy: str, seeds: list[int]) -> list[dict]:
    """One row per task and MAC budget of a post_prune stage's results (``run_dirs``: per task, the folder of its
    ``seed-N.json``), over the fine-tuning seeds; the units were ranked by ``strategy``'s criterion."""
    rows = []
    for task, run_dir in run_dirs.items():
        results = [json.loads((run_dir / f"seed-{seed}.json").read_text()) for seed in seeds]
        unpruned = [result["unpruned"]["test"]["mcc"] for result in results]
        for index, budget in enumerate(results[0]["budgets"]):
            runs = [{"mcc": budgets["test"]["mcc"],
                     **{name: budgets.get(record, {}).get("mcc") for name, record in ABLATIONS.items()},
                     "speedups": {f"speedup_{runtime}_b{size}": _speedup(budgets["speedup"], f"{runtime}_batch_{size}")
                                  for runtime in ("torch", "onnx") for size in (1, 32)}}
                    for budgets in (result["budgets"][index] for result in results)]
            rows.append({"task": task, "strategy": strategy, "mode": "after",
                         "mac_ratio": budget["mac_ratio"], **_aggregate(runs, unpruned)})
    return rows


def before_finetuning_rows(reports: Path, tasks: list[str], strategies: list[str], deployed: list[str],
                           ratios: list[float], seeds: list[int]) -> list[dict]:
    """One row per task, ratio and strategy (unpruned, head-only and structured ones) pruned before fine-tuning, over
    its fine-tuned models; its MAC ratio is the fraction its prune stage removed. The PyTorch speed-ups are the
    latency stage's; the onnxruntime ones the deploy stage's, for the ``deployed`` strategies (the others have none).
    The unpruned model, the same at every ratio, has one row."""
    rows = []
    for ratio in ratios:
        runs_by_pair = load_runs(reports, tasks, list(dict.fromkeys(["none", *strategies])), ratio, seeds)
        for task in tasks:
            unpruned = [run["test"]["mcc"] for run in runs_by_pair[(task, "none")]]
            for strategy in strategies:
                name = model_name(strategy, ratio)
                record = json.loads(next(iter(sorted((reports / "prune" / task / name).glob("seed-*/heads.json"))))
                                    .read_text())
                if record["kind"] not in KINDS or (record["kind"] == "none" and ratio != ratios[0]):
                    continue
                runs = []
                for run in runs_by_pair[(task, strategy)]:
                    onnx = (_deployed(reports / "deploy", task, name, run["finetune_seed"])[str(run["pruning_seed"])]
                            ["speedup"] if strategy in deployed else {})
                    runs.append({"mcc": run["test"]["mcc"], "speedups": {
                        f"speedup_{runtime}_b{size}": _speedup(speedups, f"{prefix}_{size}")
                        for runtime, speedups, prefix in (("torch", run["speedup"], "batch"), ("onnx", onnx, "onnx_batch"))
                        for size in (1, 32)}})
                rows.append({"task": task, "strategy": strategy, "mode": "before" if record["kind"] != "none" else "",
                             "mac_ratio": record["removed_mac_fraction"], **_aggregate(runs, unpruned)})
    return rows


def _deployed(deploy_dir: Path, task: str, name: str, seed: int) -> dict:
    """The deploy stage's records of one (task, strategy-ratio, fine-tuning seed), by pruning seed."""
    return json.loads((deploy_dir / task / name / f"seed-{seed}.json").read_text())


def structured_table(rows: list[dict]) -> pd.DataFrame:
    """The rows as the comparison table (:data:`COLUMNS`), by task, then MAC ratio."""
    return pd.DataFrame(rows, columns=COLUMNS).sort_values(["task", "mac_ratio", "mode", "strategy"], kind="stable",
                                                           ignore_index=True)


def target_lines(table: pd.DataFrame) -> list[str]:
    """For each task and target (speed-up, MCC points): the fastest structured row within the MCC loss, per runtime."""
    lines = []
    for task, rows in table.groupby("task", sort=False):
        unpruned = float((rows["mcc_mean"] - rows["mcc_delta"]).iloc[0])
        if unpruned < LEARNED_MCC:
            lines.append(f"- {task}: the unpruned model's test MCC is {unpruned:.3f}, so it has not learnt the task "
                         "in this run; no target is read off it")
            continue
        structured = rows[rows["strategy"].str.startswith("structured")]
        for speedup, points in TARGETS:
            within = structured[structured["mcc_delta"] >= -points / 100]
            parts = []
            for runtime in ("torch", "onnx"):
                column = f"speedup_{runtime}_b32"
                best = within.loc[within[column].idxmax()] if within[column].notna().any() else None
                if best is None:
                    parts.append(f"{RUNTIMES[runtime]}: no run within the loss")
                else:
                    verdict = "reached" if best[column] >= speedup else "not reached"
                    parts.append(f"{RUNTIMES[runtime]}: {verdict}, best {best[column]:.2f}× ({best['mode']} fine-tuning, "
                                 f"{best['mac_ratio']:.0%} of MACs removed, ΔMCC {100 * best['mcc_delta']:+.1f})")
            lines.append(f"- {task}, ≥ {speedup:g}× at ≤ {points:g} MCC points below unpruned — " + "; ".join(parts))
    return lines


def _number(value: float, digits: int) -> str:
    return "–" if pd.isna(value) else f"{value:.{digits}f}"


def render_markdown(table: pd.DataFrame, setup: str) -> str:
    """reports/structured.md: the table per task, the targets and the setup."""
    lines = ["# Structured pruning: heads + FFN neurons to a MAC budget", "", setup, "",
             "## Targets (measured speed-up at batch 32)", "", *target_lines(table), ""]
    for task, rows in table.groupby("task", sort=False):
        lines += [f"## {task}", "", ("| strategy | pruned | MACs removed | n | test MCC | ΔMCC (points) | speed-up PyTorch "
                                     "b32 | onnxruntime b32 | PyTorch b1 | onnxruntime b1 | MCC without reconstruction | MCC without "
                                     "rearrangement or tuning |"),
                  "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for row in rows.itertuples():
            mcc = _number(row.mcc_mean, 4) + ("" if pd.isna(row.mcc_std) else f" ± {row.mcc_std:.4f}")
            lines.append(f"| {row.strategy} | {row.mode and row.mode + ' fine-tuning'} | {row.mac_ratio:.0%} | {row.n} | {mcc} | "
                         f"{100 * row.mcc_delta:+.1f} | {_number(row.speedup_torch_b32, 2)} | {_number(row.speedup_onnx_b32, 2)} | "
                         f"{_number(row.speedup_torch_b1, 2)} | {_number(row.speedup_onnx_b1, 2)} | "
                         f"{_number(row.mcc_without_tuning_mean, 4)} | {_number(row.mcc_without_rearrangement_mean, 4)} |")
        lines.append("")
    return "\n".join(lines)


def _series_style(strategy: str, mode: str) -> str:
    """Marker and line of a series: after fine-tuning circles on a solid line, before it squares on a dashed one,
    head-only strategies triangles on a dotted one."""
    if not strategy.startswith("structured"):
        return "^:"
    return "o-" if mode == "after" else "s--"


def plot_pareto(table: pd.DataFrame, path: Path) -> None:
    """Measured speed-up at batch 32 against test MCC: per task a row of panels, one per runtime (PyTorch,
    onnxruntime), each with one line per strategy and mode through its budgets (each point labelled with the
    fraction of MACs removed, its error bar the std of MCC over seeds) and the unpruned model's MCC as a dotted
    vertical line. A strategy has the same colour in every panel; one not exported to ONNX is absent from that
    panel."""
    tasks = list(dict.fromkeys(table["task"]))
    pruned = table[table["strategy"] != "none"]
    colours = {strategy: f"C{index}" for index, strategy in enumerate(dict.fromkeys(pruned["strategy"]))}
    with saved_figure(path, len(tasks), len(RUNTIMES), figsize=(6.0 * len(RUNTIMES), 4.8 * len(tasks)),
                      squeeze=False, sharex="row", sharey="row") as (_fig, axes):
        for panels, task in zip(axes, tasks):
            rows = table[table["task"] == task]
            unpruned_mcc = float((rows["mcc_mean"] - rows["mcc_delta"]).iloc[0])
            for ax, (runtime, runtime_name) in zip(panels, RUNTIMES.items()):
                column = f"speedup_{runtime}_b32"
                for (strategy, mode), series in pruned[pruned["task"] == task].groupby(["strategy", "mode"], sort=False):
                    series = series.dropna(subset=[column]).sort_values("mac_ratio")
                    if series.empty:
                        continue
                    ax.errorbar(series["mcc_mean"], series[column], xerr=series["mcc_std"].fillna(0.0),
                                fmt=_series_style(strategy, mode), color=colours[strategy], markersize=5, capsize=2,
                                linewidth=1.2, label=f"{strategy}, {mode} fine-tuning")
                    for row in series.itertuples():
                        ax.annotate(f"{row.mac_ratio:.0%}", (row.mcc_mean, getattr(row, column)), fontsize=6,
                                    xytext=(3, 3), textcoords="offset points", color=colours[strategy])
                ax.axvline(unpruned_mcc, color="gray", linestyle=":", linewidth=1, label="unpruned")
                ax.axhline(1.0, color="gray", linestyle=":", linewidth=1)
                ax.set(title=f"{task}, {runtime_name}: speed-up at batch 32 against test MCC",
                       xlabel="test MCC (± std over seeds)", ylabel="measured speed-up over unpruned")
                ax.legend(fontsize=7)
