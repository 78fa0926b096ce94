"""The structured-pruning comparison: quality against measured speed-up for each MAC budget, pruning before
fine-tuning (the prune stage's structured strategies) and after it (the post_prune stages: retraining-free, and
retrained by each of post_prune.recoveries), each in FP32 and INT8, beside the head-only strategies;
reports/structured.{md,csv} and the Pareto figure."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from mcap.errors import McapError
from mcap.figures import saved_figure
from mcap.grid import model_name
from mcap.paired import paired_difference, seed_table, verdict
from mcap.post_prune_files import layout_key, post_prune_results
from mcap.report import load_runs, machine_label, mean_std

KINDS = ("none", "head", "structured")  # unstructured sparsity gives no dense speed-up: not on these axes
# How a row's model was made: pruned before fine-tuning, after it without retraining, or after it and retrained
# (post_prune.recoveries); the unpruned rows have none.
MODES = {"before": "before fine-tuning", "after": "after, retraining-free", "distill": "after, distilled",
         "cross_entropy": "after, retrained on labels"}
SPEEDUPS = ["speedup_torch_b32", "speedup_onnx_b32", "speedup_torch_b1", "speedup_onnx_b1"]
COLUMNS = ["task", "strategy", "mode", "precision", "mac_ratio", "n", "mcc_mean", "mcc_std", "mcc_delta",
           "mcc_delta_low", "mcc_delta_high", *SPEEDUPS, "mcc_without_tuning_mean", "mcc_without_rearrangement_mean"]
# After fine-tuning, the MCC without a step of the method: column stem -> the budget record it is read from
ABLATIONS = {"mcc_without_tuning": "test_without_tuning", "mcc_without_rearrangement": "test_without_rearrangement"}
# The targets, in onnxruntime at batch 32 against the unpruned FP32 model: (mode or None for any, precision) ->
# speed-up, each "within one MCC point": mean paired ΔMCC ≥ -1 point and its 95% interval's lower end ≥ -2 points.
TARGETS = {("after", "fp32"): 1.5, ("distill", "fp32"): 2.0, (None, "int8"): 3.0}
WITHIN_MEAN, WITHIN_LOW = -0.01, -0.02
RUNTIMES = {"torch": "PyTorch", "onnx": "onnxruntime"}
LEARNED_MCC = 0.1  # an unpruned model below this test MCC has not learnt its task: losses against it mean nothing
# The instruction sets a CPU's speed-ups depend on (/proc/cpuinfo flag -> name), INT8's above all (mcap.quantize)
CPU_FEATURES = {"avx2": "AVX2", "avx512f": "AVX-512", "avx512_vnni": "AVX-512 VNNI", "avx_vnni": "AVX-VNNI",
                "amx_int8": "AMX-INT8"}


def timing_cpu(machines: list[dict]) -> str:
    """The one CPU every timing of the report ran on (``machines``: the timing records' ``machine``,
    :func:`mcap.evaluate.machine_record`), with its :data:`CPU_FEATURES`; an error if they differ, since speed-ups
    are never pooled across CPU kinds (a grid run in chunks on several machines)."""
    def kind(machine: dict) -> str:
        flags = set((machine["cpu"].get("flags") or "").split())
        features = [name for flag, name in CPU_FEATURES.items() if flag in flags]
        return f"{machine_label(machine)}; {', '.join(features) or 'none of ' + ', '.join(CPU_FEATURES.values())}"

    kinds = sorted({kind(machine) for machine in machines})
    if len(kinds) != 1:
        raise McapError(f"the structured report's timings come from {len(kinds)} kinds of CPU ({' | '.join(kinds)}): "
                        "speed-ups are not pooled across CPUs; rerun latency and post_prune_latency on one machine "
                        "(dvc repro -f -s)")
    return kinds[0]


def _speedups(speedup: dict, runtimes: dict[str, str]) -> dict[str, float]:
    """The :data:`SPEEDUPS` columns from a timing record's medians; ``runtimes``: column runtime -> record prefix
    (``onnx`` -> ``onnx_int8`` for an INT8 model); a runtime not timed is NaN."""
    return {f"speedup_{runtime}_b{size}": (speedup[f"{prefix}_batch_{size}"]["median"]
                                           if f"{prefix}_batch_{size}" in speedup else math.nan)
            for runtime in ("torch", "onnx") for size in (32, 1) for prefix in [runtimes.get(runtime, "")]}


def architecture_speedups(record: dict) -> dict[str, dict]:
    """A timing record's speed-ups (the latency or post_prune_latency stage's: ``speedup`` in PyTorch, ``onnx`` where
    timed in onnxruntime) as one dict, keys ``torch_batch_N``, ``onnx_batch_N``, ``onnx_int8_batch_N``."""
    return {**{f"torch_{key}": value for key, value in record["speedup"].items()},
            **record.get("onnx", {}).get("speedup", {})}


def _aggregate(runs: list[dict], unpruned: Mapping[int, float]) -> dict:
    """Mean ± std of the runs' test MCC, its paired difference to the unpruned FP32 model of the same fine-tuning seed
    (``unpruned``: seed -> MCC) with its 95% bootstrap interval (:func:`mcap.paired.paired_difference`: over the
    fine-tuning seeds and the run's pruning seeds), and the mean of each measured speed-up. A run: ``mcc``,
    ``finetune_seed``, ``pruning_seed``, ``speedups`` and the :data:`ABLATIONS`' MCCs where measured."""
    mcc, std = mean_std([run["mcc"] for run in runs])
    model = pd.DataFrame([{key: run[key] for key in ("pruning_seed", "finetune_seed", "mcc")} for run in runs])
    paired = paired_difference(seed_table(model, "mcc"), _one_pruning(unpruned, "mcc"), seed=0)
    row = {"n": len(runs), "mcc_mean": mcc, "mcc_std": std, "mcc_delta": paired["mean_delta"],
           "mcc_delta_low": paired["ci_low"], "mcc_delta_high": paired["ci_high"]}
    for column in SPEEDUPS:
        row[column] = float(np.mean([run["speedups"][column] for run in runs]))
    for name in ABLATIONS:
        values = [run[name] for run in runs if run.get(name) is not None]
        row[f"{name}_mean"] = float(np.mean(values)) if values else math.nan
    return row


def _precisions(record: dict, speedup: dict) -> dict[str, tuple[float, dict]]:
    """A deployed model's (test MCC, speed-up columns) per precision, from its architecture's timing record
    ``speedup`` (keys ``torch_batch_N``, ``onnx_batch_N``, ``onnx_int8_batch_N``): FP32 in PyTorch and onnxruntime,
    and INT8 where ``record`` has it, in onnxruntime only."""
    precisions = {"fp32": (record["test"]["mcc"], _speedups(speedup, {"torch": "torch", "onnx": "onnx"}))}
    if "int8" in record:
        precisions["int8"] = (record["int8"]["test"]["mcc"], _speedups(speedup, {"onnx": "onnx_int8"}))
    return precisions


def after_finetuning_rows(run_dirs: Mapping[str, Path], strategy: str, seeds: list[int], samples: list[int],
                          timings: Mapping[str, Mapping[str, dict]]) -> list[dict]:
    """The rows of a post_prune stage's results (``run_dirs``: per task, the folder of :func:`post_prune_results`),
    over the fine-tuning seeds and the pruning seeds that drew the Fisher samples; the units were ranked by
    ``strategy``'s criterion. Per task: the unpruned model in INT8 (where quantised; the same model at every pruning
    seed, read at the first), then per MAC budget the retraining-free model and each recovery, each in FP32 and INT8.
    Speed-ups: per task, the post_prune_latency stage's records by layout (``timings``); a recovery keeps its
    budget's architecture, so its speed-ups are the budget's."""
    rows = []
    for task, run_dir in run_dirs.items():
        results = post_prune_results(run_dir, seeds, samples)

        def speedups(model: dict, timed: Mapping[str, dict] = timings[task]) -> dict[str, dict]:
            return architecture_speedups(timed[layout_key(model["kept_heads"], model["intermediate_sizes"])])

        unpruned = {seed: result["unpruned"]["test"]["mcc"] for (seed, _sample), result in results.items()}
        if all("int8" in result["unpruned"] for result in results.values()):
            runs = [{"mcc": results[seed, samples[0]]["unpruned"]["int8"]["test"]["mcc"], "finetune_seed": seed,
                     "pruning_seed": 0, "speedups": _speedups(speedups(results[seed, samples[0]]["unpruned"]),
                                                              {"onnx": "onnx_int8"})} for seed in seeds]
            rows.append({"task": task, "strategy": "none", "mode": "", "precision": "int8", "mac_ratio": 0.0,
                         **_aggregate(runs, unpruned)})
        first = next(iter(results.values()))
        for index, budget in enumerate(first["budgets"]):
            budgets = {key: result["budgets"][index] for key, result in results.items()}
            for mode in ["after", *budget.get("recovered", {})]:
                variants = {key: _precisions(b if mode == "after" else b["recovered"][mode], speedups(b))
                            for key, b in budgets.items()}
                for precision in variants[next(iter(variants))]:
                    runs = [{"mcc": variants[seed, sample][precision][0], "speedups": variants[seed, sample][precision][1],
                             "finetune_seed": seed, "pruning_seed": sample,
                             **({name: b.get(record, {}).get("mcc") for name, record in ABLATIONS.items()}
                                if (mode, precision) == ("after", "fp32") else {})}
                            for (seed, sample), b in budgets.items()]
                    rows.append({"task": task, "strategy": strategy, "mode": mode, "precision": precision,
                                 "mac_ratio": budget["mac_ratio"], **_aggregate(runs, unpruned)})
    return rows


RECONSTRUCTION_REFERENCES = ("none", "scales/unpruned")  # no reconstruction; per-unit scales towards the unpruned model
RECONSTRUCTION_COLUMNS = ["task", "strategy", "mac_ratio", "method", "reference", "n", "mcc_delta", "mcc_delta_low",
                          "mcc_delta_high", "loss_delta", "loss_delta_low", "loss_delta_high"]


def reconstruction_rows(run_dirs: Mapping[str, Path], strategy: str, seeds: list[int],
                        samples: list[int]) -> pd.DataFrame:
    """Per task, MAC budget and reconstruction method of a post_prune stage's results (``chosen``: the one picked on
    validation at each seed), its paired test MCC and loss differences from each of
    :data:`RECONSTRUCTION_REFERENCES` that ran: the same fine-tuned model pruned to the same units (one fine-tuning
    seed and Fisher sample), with and without the method; 95% bootstrap intervals over the fine-tuning seeds and the
    pruning seeds, the difference taken within each pruned model."""
    rows = []
    for task, run_dir in run_dirs.items():
        results = post_prune_results(run_dir, seeds, samples)
        for index, budget in enumerate(next(iter(results.values()))["budgets"]):
            tests = {key: {**{method: scored["test"] for method, scored in
                              result["budgets"][index]["reconstructions"].items()},
                           "chosen": result["budgets"][index]["test"]} for key, result in results.items()}
            methods = list(next(iter(tests.values())))
            for reference in (r for r in RECONSTRUCTION_REFERENCES if r in methods):
                for method in (m for m in methods if m != reference):
                    row = {"task": task, "strategy": strategy, "mac_ratio": budget["mac_ratio"], "method": method,
                           "reference": reference, "n": len(tests)}
                    for metric in ("mcc", "loss"):
                        differences = pd.DataFrame([
                            {"finetune_seed": seed, "pruning_seed": sample,
                             metric: by_method[method][metric] - by_method[reference][metric]}
                            for (seed, sample), by_method in tests.items()])
                        paired = paired_difference(seed_table(differences, metric),
                                                   _one_pruning(dict.fromkeys(seeds, 0.0), metric), seed=0)
                        row |= {f"{metric}_delta": paired["mean_delta"], f"{metric}_delta_low": paired["ci_low"],
                                f"{metric}_delta_high": paired["ci_high"]}
                    rows.append(row)
    return pd.DataFrame(rows, columns=RECONSTRUCTION_COLUMNS)


def _one_pruning(by_seed: Mapping[int, float], metric: str) -> pd.DataFrame:
    """Values per fine-tuning seed of a model pruned one way (or not at all) as a :func:`mcap.paired.seed_table`."""
    return seed_table(pd.DataFrame([{"pruning_seed": 0, "finetune_seed": seed, metric: value}
                                    for seed, value in by_seed.items()]), metric)


def reconstruction_lines(table: pd.DataFrame) -> list[str]:
    """:func:`reconstruction_rows` as a Markdown table per task, each row read as better, worse or within noise."""
    lines = []
    for task, rows in table.groupby("task", sort=False):
        lines += [f"### {task}", "", ("| MACs removed | method | against | n | ΔMCC (points, 95% interval) | "
                                      "Δ test loss (95% interval) | reading (MCC) |"), "|---:|---|---|---:|---:|---:|---|"]
        for row in rows.itertuples():
            loss = f"{row.loss_delta:+.4f}" + ("" if pd.isna(row.loss_delta_low) else
                                               f" [{row.loss_delta_low:+.4f}, {row.loss_delta_high:+.4f}]")
            reading = verdict(pd.Series({"ci_low": row.mcc_delta_low, "ci_high": row.mcc_delta_high}))
            lines.append(f"| {row.mac_ratio:.0%} | {row.method} | {row.reference} | {row.n} | "
                         f"{_points(row._asdict())} | {loss} | {reading} |")
        lines.append("")
    return lines


def before_finetuning_rows(reports: Path, tasks: list[str], strategies: list[str], deployed: list[str],
                           ratios: list[float], seeds: list[int]) -> list[dict]:
    """One row per task, ratio, strategy (unpruned, head-only and structured ones) pruned before fine-tuning and
    precision, over its fine-tuned models; its MAC ratio is the fraction its prune stage removed. Speed-ups are the
    latency stage's (once per pruned architecture), in onnxruntime and INT8 for the ``deployed`` strategies only;
    their INT8 quality is the deploy stage's, per fine-tuned model. The unpruned model, the same at every ratio, has
    one row."""
    rows = []
    for ratio in ratios:
        runs_by_pair = load_runs(reports, tasks, list(dict.fromkeys(["none", *strategies])), ratio, seeds)
        for task in tasks:
            unpruned = {run["finetune_seed"]: run["test"]["mcc"] for run in runs_by_pair[(task, "none")]}
            for strategy in strategies:
                name = model_name(strategy, ratio)
                record = json.loads(next(iter(sorted((reports / "prune" / task / name).glob("seed-*/heads.json"))))
                                    .read_text())
                if record["kind"] not in KINDS or (record["kind"] == "none" and ratio != ratios[0]):
                    continue
                variants = []
                for run in runs_by_pair[(task, strategy)]:
                    speedup = architecture_speedups(run)
                    if strategy in deployed:  # quality per fine-tuned model; speed per architecture (latency)
                        onnx = _deployed(reports / "deploy", task, name, run["finetune_seed"])[str(run["pruning_seed"])]
                        precisions = _precisions({**onnx, "test": run["test"]}, speedup)
                    else:
                        precisions = {"fp32": (run["test"]["mcc"], _speedups(speedup, {"torch": "torch"}))}
                    variants.append((run, precisions))
                for precision in variants[0][1]:
                    runs = [{"mcc": precisions[precision][0], "speedups": precisions[precision][1],
                             "finetune_seed": run["finetune_seed"], "pruning_seed": run["pruning_seed"]}
                            for run, precisions in variants]
                    rows.append({"task": task, "strategy": strategy, "mode": "before" if record["kind"] != "none" else "",
                                 "precision": precision, "mac_ratio": record["removed_mac_fraction"],
                                 **_aggregate(runs, unpruned)})
    return rows


def _deployed(deploy_dir: Path, task: str, name: str, seed: int) -> dict:
    """The deploy stage's records of one (task, strategy-ratio, fine-tuning seed), by pruning seed."""
    return json.loads((deploy_dir / task / name / f"seed-{seed}.json").read_text())


def structured_table(rows: list[dict]) -> pd.DataFrame:
    """The rows as the comparison table (:data:`COLUMNS`), by task, then MAC ratio."""
    return pd.DataFrame(rows, columns=COLUMNS).sort_values(["task", "mac_ratio", "mode", "strategy", "precision"],
                                                           kind="stable", ignore_index=True)


def _within_one_point(rows: pd.DataFrame) -> pd.Series:
    return (rows["mcc_delta"] >= WITHIN_MEAN) & (rows["mcc_delta_low"] >= WITHIN_LOW)


def target_lines(table: pd.DataFrame) -> list[str]:
    """For each task and target of :data:`TARGETS`: reached or not, and the fastest structured row within one MCC
    point (onnxruntime, batch 32)."""
    lines = []
    for task, rows in table.groupby("task", sort=False):
        unpruned = float((rows["mcc_mean"] - rows["mcc_delta"]).iloc[0])
        if unpruned < LEARNED_MCC:
            lines.append(f"- {task}: the unpruned model's test MCC is {unpruned:.3f}, so it has not learnt the task "
                         "in this run; no target is read off it")
            continue
        structured = rows[rows["strategy"].str.startswith("structured") & rows["speedup_onnx_b32"].notna()]
        for (mode, precision), speedup in TARGETS.items():
            candidates = structured[(structured["precision"] == precision)
                                    & ((structured["mode"] == mode) if mode else True)]
            name = f"{MODES[mode] if mode else 'pruned'} {precision.upper()} ≥ {speedup:g}×"
            if candidates.empty:
                lines.append(f"- {task}, {name}: not run")
                continue
            within = candidates[_within_one_point(candidates)]
            if within.empty:
                lines.append(f"- {task}, {name}: not reached, no run within one MCC point"
                             f"{'' if candidates['mcc_delta_low'].notna().any() else ' (one seed: no interval)'}")
                continue
            best = within.loc[within["speedup_onnx_b32"].idxmax()]
            verdict = "reached" if best["speedup_onnx_b32"] >= speedup else "not reached"
            lines.append(f"- {task}, {name}: {verdict}, best {best['speedup_onnx_b32']:.2f}× ({MODES[best['mode']]}, "
                         f"{best['mac_ratio']:.0%} of MACs removed, ΔMCC {_points(best)})")
    return lines


def best_per_mode(table: pd.DataFrame) -> pd.DataFrame:
    """Per task, mode and precision, the fastest pruned row in onnxruntime at batch 32 among those within one MCC
    point of the unpruned FP32 model (every family: head-only, ``layer_drop`` and structured strategies). A mode with
    no row within one point is absent."""
    modes = table["mode"].fillna("")  # read back from the CSV, the unpruned rows' empty mode is NaN
    timed = table[(modes != "") & table["speedup_onnx_b32"].notna()]
    within = timed[_within_one_point(timed)]
    fastest = within.groupby(["task", "mode", "precision"], sort=False)["speedup_onnx_b32"].idxmax()
    return within.loc[fastest.to_numpy()]


def best_per_mode_lines(table: pd.DataFrame) -> list[str]:
    """:func:`best_per_mode` as a Markdown table."""
    best = best_per_mode(table)
    if best.empty:
        return ["No pruned model timed in onnxruntime is within one MCC point."]
    lines = [("| task | pruned | precision | strategy | MACs removed | test MCC | ΔMCC (points, 95% interval) | "
              "speed-up onnxruntime b32 | b1 |"), "|---|---|---|---|---:|---:|---:|---:|---:|"]
    lines += [f"| {row.task} | {MODES[row.mode]} | {row.precision.upper()} | {row.strategy} | {row.mac_ratio:.0%} | "
              f"{_number(row.mcc_mean, 4)} | {_points(row._asdict())} | {row.speedup_onnx_b32:.2f}× | "
              f"{_number(row.speedup_onnx_b1, 2)}× |" for row in best.itertuples()]
    return lines


def _points(row) -> str:
    """ΔMCC in points with its interval."""
    interval = "" if pd.isna(row["mcc_delta_low"]) else (
        f" [{100 * row['mcc_delta_low']:+.1f}, {100 * row['mcc_delta_high']:+.1f}]")
    return f"{100 * row['mcc_delta']:+.1f}{interval}"


def _number(value: float, digits: int) -> str:
    return "–" if pd.isna(value) else f"{value:.{digits}f}"


def render_markdown(table: pd.DataFrame, setup: str, reconstructions: pd.DataFrame | None = None) -> str:
    """reports/structured.md: the targets, the fastest model within one point per mode, the reconstruction methods
    against no reconstruction (``reconstructions``: :func:`reconstruction_rows`), the table per task and the
    setup."""
    lines = ["# Structured pruning: heads + FFN neurons to a MAC budget", "", setup, "",
             ("## Targets (onnxruntime, batch 32, against the unpruned FP32 model; within one MCC point: mean paired "
              "ΔMCC ≥ −1 point, its 95% interval's lower end ≥ −2)"), "", *target_lines(table), "",
             "## The fastest model within one MCC point, per mode and precision", "", *best_per_mode_lines(table), ""]
    if reconstructions is not None and not reconstructions.empty:
        lines += [("## Reconstruction after fine-tuning, paired on the same pruned model (the chosen method: the best "
                   "on validation at each seed)"), "", *reconstruction_lines(reconstructions)]
    for task, rows in table.groupby("task", sort=False):
        lines += [f"## {task}", "", ("| strategy | pruned | precision | MACs removed | n | test MCC | ΔMCC (points, 95% "
                                     "interval) | speed-up PyTorch b32 | onnxruntime b32 | PyTorch b1 | onnxruntime b1 | "
                                     "MCC without reconstruction | MCC without rearrangement or tuning |"),
                  "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for row in rows.itertuples():
            mcc = _number(row.mcc_mean, 4) + ("" if pd.isna(row.mcc_std) else f" ± {row.mcc_std:.4f}")
            lines.append(f"| {row.strategy} | {MODES.get(row.mode, '')} | {row.precision.upper()} | {row.mac_ratio:.0%} | "
                         f"{row.n} | {mcc} | {_points(row._asdict())} | {_number(row.speedup_torch_b32, 2)} | "
                         f"{_number(row.speedup_onnx_b32, 2)} | {_number(row.speedup_torch_b1, 2)} | "
                         f"{_number(row.speedup_onnx_b1, 2)} | {_number(row.mcc_without_tuning_mean, 4)} | "
                         f"{_number(row.mcc_without_rearrangement_mean, 4)} |")
        lines.append("")
    return "\n".join(lines)


MARKERS = {"before": "s--", "after": "o-", "distill": "D-", "cross_entropy": "v-"}


def _series_style(strategy: str, mode: str) -> str:
    """Marker and line of a series: head-only strategies triangles on a dotted line; structured ones by mode
    (:data:`MARKERS`: before fine-tuning squares on a dashed line, after it circles, distilled diamonds, retrained on
    the labels inverted triangles, on solid lines)."""
    return MARKERS[mode] if strategy.startswith("structured") else "^:"


def plot_pareto(table: pd.DataFrame, path: Path) -> None:
    """Measured speed-up at batch 32 against test MCC: per task a row of panels, one per runtime (PyTorch,
    onnxruntime), each with one line per strategy, mode and precision through its budgets (INT8: hollow markers;
    each point labelled with the fraction of MACs removed, its error bar the std of MCC over seeds), the unpruned
    INT8 model as a star, and the unpruned FP32 model's MCC as a dotted vertical line. A strategy has the same colour
    in every panel; a model not run in a runtime is absent from its panel."""
    tasks = list(dict.fromkeys(table["task"]))
    pruned = table[table["strategy"] != "none"]
    colours = {strategy: f"C{index}" for index, strategy in enumerate(dict.fromkeys(pruned["strategy"]))}
    with saved_figure(path, len(tasks), len(RUNTIMES), figsize=(6.0 * len(RUNTIMES), 4.8 * len(tasks)),
                      squeeze=False, sharex="row", sharey="row") as (_fig, axes):
        for panels, task in zip(axes, tasks):
            rows = table[table["task"] == task]
            unpruned_mcc = float((rows["mcc_mean"] - rows["mcc_delta"]).iloc[0])
            unpruned_int8 = rows[(rows["strategy"] == "none") & (rows["precision"] == "int8")]
            for ax, (runtime, runtime_name) in zip(panels, RUNTIMES.items()):
                column = f"speedup_{runtime}_b32"
                groups = pruned[pruned["task"] == task].groupby(["strategy", "mode", "precision"], sort=False)
                for (strategy, mode, precision), series in groups:
                    series = series.dropna(subset=[column]).sort_values("mac_ratio")
                    if series.empty:
                        continue
                    ax.errorbar(series["mcc_mean"], series[column], xerr=series["mcc_std"].fillna(0.0),
                                fmt=_series_style(strategy, mode), color=colours[strategy], markersize=5, capsize=2,
                                linewidth=1.2, markerfacecolor="none" if precision == "int8" else colours[strategy],
                                label=f"{strategy}, {MODES[mode]}, {precision.upper()}")
                    for row in series.itertuples():
                        ax.annotate(f"{row.mac_ratio:.0%}", (row.mcc_mean, getattr(row, column)), fontsize=6,
                                    xytext=(3, 3), textcoords="offset points", color=colours[strategy])
                for row in unpruned_int8.dropna(subset=[column]).itertuples():
                    ax.plot(row.mcc_mean, getattr(row, column), "*", color="black", markersize=9,
                            label="unpruned, INT8")
                ax.axvline(unpruned_mcc, color="gray", linestyle=":", linewidth=1, label="unpruned")
                ax.axhline(1.0, color="gray", linestyle=":", linewidth=1)
                ax.set(title=f"{task}, {runtime_name}: speed-up at batch 32 against test MCC",
                       xlabel="test MCC (± std over seeds)", ylabel="measured speed-up over unpruned FP32")
                ax.legend(fontsize=7)
