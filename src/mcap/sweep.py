"""Collect DVC experiments (e.g. a ``prune.ratio`` sweep) into reports/sweep.md and reports/pareto.png.

Usage, after ``dvc exp run --queue -S 'prune.ratio=0.1,0.2,0.3,0.5' && dvc queue start``::

    python -m mcap.sweep            # reads `dvc exp show --json --all-commits`

Each experiment (and the workspace) contributes one point per (task, strategy, fine-tuning seed):
test MCC and loss from its benchmark metrics, the batch-1/batch-32 speed-up measured against the
unpruned architecture in the same process, and the MAC bound. Points with the same ratio are
averaged (seeds, whether from the ``seeds`` param or from separate experiments).
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from mcap.figures import saved_figure
from mcap.report import ROW_LABELS, row_order

BENCHMARK_PREFIX = "reports/benchmark/"


def experiment_records(shown: object) -> Iterator[dict]:
    """Every {params, metrics} record in ``dvc exp show --json`` output, whatever its nesting."""
    if isinstance(shown, dict):
        data = shown.get("data")
        if isinstance(data, dict) and "params" in data and "metrics" in data:
            yield {"name": shown.get("name") or shown.get("rev"), "params": data["params"], "metrics": data["metrics"]}
        for value in shown.values():
            yield from experiment_records(value)
    elif isinstance(shown, list):
        for value in shown:
            yield from experiment_records(value)


def points(records: list[dict]) -> list[dict]:
    """One row per (ratio, seed, task, strategy, fine-tuning seed) with the numbers the sweep plots.

    The same run can appear in several experiments (the workspace and its baseline, or a seed
    that two experiments share); it is counted once.
    """
    rows = {}
    for record in records:
        params = record["params"].get("params.yaml", {}).get("data", {})
        ratio, pruning_seed = params.get("prune", {}).get("ratio"), params.get("seed")
        if ratio is None:
            continue
        for path, entry in record["metrics"].items():
            if not path.startswith(BENCHMARK_PREFIX) or not entry.get("data"):
                continue
            run = path.removeprefix(BENCHMARK_PREFIX).removesuffix(".json")
            if "/seed-" not in run:  # a commit from before fine-tuning seeds were a matrix axis
                continue
            metrics = entry["data"]
            pair, seed = run.split("/seed-")
            task, strategy = pair.split("-", 1)
            row = {"ratio": ratio, "seed": int(seed), "task": task, "strategy": strategy, "mcc": metrics["test"]["mcc"],
                   "loss": metrics["test"]["loss"], "mac_bound": metrics["mac_bound_speedup"]}
            row.update({f"speedup_{batch}": timing["median"] for batch, timing in metrics.get("speedup", {}).items()})
            rows.setdefault((ratio, pruning_seed, task, strategy, int(seed)), row)
    return list(rows.values())


def aggregate(rows: list[dict]) -> dict[tuple[str, str, float], dict[str, tuple[float, float, int]]]:
    """(task, strategy, ratio) -> {measure: (mean, std, runs)} over seeds."""
    grouped: dict[tuple, list[dict]] = defaultdict(list)
    for row in rows:
        grouped[(row["task"], row["strategy"], row["ratio"])].append(row)
    summary = {}
    for key, group in grouped.items():
        measures = [m for m in group[0] if m not in ("ratio", "seed", "task", "strategy")]
        summary[key] = {m: (float(np.mean([r[m] for r in group if m in r])), float(np.std([r[m] for r in group if m in r])),
                            len(group)) for m in measures}
    return summary


def _cell(values: dict, measure: str, digits: int) -> str:
    if measure not in values:
        return "–"
    mean, std, runs = values[measure]
    return f"{mean:.{digits}f} ± {std:.{digits}f}" if runs > 1 else f"{mean:.{digits}f}"


def sweep_markdown(summary: dict) -> str:
    tasks = list(dict.fromkeys(task for task, _, _ in summary))
    ratios = sorted({ratio for _, _, ratio in summary})
    parts = ["# Pruning-ratio sweep", "",
             ("Collected from `dvc exp show --json` by `python -m mcap.sweep`; mean ± std where several seeds ran. "
             "Speed-up: unpruned / pruned forward time, timed interleaved in one process (batch 1 / batch 32); "
             "bound: MAC bound."), "", "![MCC and speed-up vs pruning ratio](pareto.png)", ""]
    for task in tasks:
        strategies = row_order(list(dict.fromkeys(s for t, s, _ in summary if t == task)))
        header = (["Strategy"] + [f"r={r:g} MCC" for r in ratios] + [f"r={r:g} loss" for r in ratios]
                  + [f"r={r:g} speed-up b1 / b32 (bound)" for r in ratios])
        lines = [f"## {task}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for strategy in strategies:
            cells = [_cell(summary.get((task, strategy, r), {}), measure, 3) for measure in ("mcc", "loss") for r in ratios]
            for r in ratios:
                values = summary.get((task, strategy, r), {})
                cells.append(f"{_cell(values, 'speedup_batch_1', 2)} / {_cell(values, 'speedup_batch_32', 2)} "
                             f"({_cell(values, 'mac_bound', 2)})" if values else "–")
            lines.append(f"| {ROW_LABELS.get(strategy, strategy)} | " + " | ".join(cells) + " |")
        parts += lines + [""]
    return "\n".join(parts)


def plot_pareto(summary: dict, path: Path) -> None:
    """Per task: MCC vs ratio per strategy, and measured batch-32 speed-up vs ratio with the MAC bound."""
    tasks = list(dict.fromkeys(task for task, _, _ in summary))
    with saved_figure(path, len(tasks), 2, figsize=(10, 3.6 * len(tasks)), squeeze=False) as (_fig, axes):
        for (mcc_ax, speed_ax), task in zip(axes, tasks):
            strategies = row_order(list(dict.fromkeys(s for t, s, _ in summary if t == task)))
            for strategy in strategies:
                ratios = sorted(r for t, s, r in summary if t == task and s == strategy)
                values = [summary[(task, strategy, r)] for r in ratios]
                mcc_ax.errorbar(ratios, [v["mcc"][0] for v in values], yerr=[v["mcc"][1] for v in values], marker="o",
                                label=strategy, capsize=2)
                if strategy.startswith("head") or strategy == "mcap":
                    speed_ax.plot(ratios, [v.get("speedup_batch_32", (np.nan,))[0] for v in values], marker="o", label=strategy)
            bound_ratios = sorted(r for t, s, r in summary if t == task and s == "head_random")
            if bound_ratios:
                speed_ax.plot(bound_ratios, [summary[(task, "head_random", r)]["mac_bound"][0] for r in bound_ratios],
                              "k--", label="MAC bound")
            mcc_ax.set(title=f"{task}: test MCC vs pruning ratio", xlabel="prune.ratio", ylabel="MCC")
            speed_ax.set(title=f"{task}: measured speed-up (batch 32) vs ratio", xlabel="prune.ratio", ylabel="speed-up ×")
            mcc_ax.legend(fontsize=7)
            speed_ax.legend(fontsize=7)


def main() -> None:
    """``python -m mcap.sweep [dvc exp show options]``; by default the experiments of every commit."""
    options = sys.argv[1:] or ["--all-commits"]
    shown = json.loads(subprocess.run(["dvc", "exp", "show", "--json", *options], capture_output=True, text=True,
                                      check=True).stdout)
    rows = points(list(experiment_records(shown)))
    if not rows:
        sys.exit("error: no experiment with benchmark metrics found in `dvc exp show --json`")
    summary = aggregate(rows)
    Path("reports/sweep.md").write_text(sweep_markdown(summary))
    plot_pareto(summary, Path("reports/pareto.png"))
    print(f"reports/sweep.md, reports/pareto.png: {len(rows)} points, ratios {sorted({r['ratio'] for r in rows})}")


if __name__ == "__main__":
    main()
