"""Table I: every strategy's quality, cost and speed-up per task, beside the paper's own Table I."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mcap.grid import model_name

# The paper's Table I (Rajapaksha & Crespi 2024, BERT-base, full data, their GPU), for comparison only.
PAPER_TABLE_I = [
    ("1. Iterative magnitude pruning", 1100, 81.41, 0.6314, 0.4501, 631, 141.69, 0.3623, 0.5952),
    ("2. L1 unstructured pruning", 1520, 69.37, 0.6204, 0.2781, 258, 345.72, 0.3737, 0.6608),
    ("3. Random magnitude pruning", 1520, 58.94, 0.7524, 0.3511, 480, 137.71, 0.2621, 0.6797),
    ("4. HeadImp: avg attention to [SEP]", 373, 162.56, 0.7145, 0.4085, 392, 154.34, 0.2591, 0.6327),
    ("5. HeadImp: attention entropy", 175, 346.39, 0.6641, 0.4948, 817, 74.24, 0.3251, 0.6306),
    ("6. Random head pruning", 191, 317.54, 0.6367, 0.4541, 544, 112.48, 0.3431, 0.6168),
    ("7. MCAP (theirs)", 124, 243.69, 0.7252, 0.2103, 254, 152.08, 0.3869, 0.5041),
    ("8. BERT fine-tuning", 1190, 75.01, 0.8604, 0.2357, 1500, 59.58, 0.5869, 0.5123),
]


def read_labels(prune_dir: Path, task: str, strategies: list[str], ratio: float) -> dict[str, str]:
    """Each strategy's Table I label, as its prune stage recorded it in
    ``<prune_dir>/<task>/<strategy>-<ratio>/seed-<pruning seed>/heads.json``."""
    return {strategy: json.loads(next(iter(sorted((prune_dir / task / model_name(strategy, ratio)).glob(
        "seed-*/heads.json")))).read_text())["label"] for strategy in strategies}


def row_key(label: str) -> tuple[float, str]:
    """A label's row number ("6b. …" -> (6, "b")): the paper's numbering, so that its rows keep its order and a
    row of ours sits beside the row it extends. Unnumbered labels sort last."""
    match = re.match(r"(\d+)([a-z]?)\. ", label)
    return (int(match[1]), match[2]) if match else (math.inf, "")


def row_order(labels: dict[str, str]) -> list[str]:
    """The strategies of ``labels`` ({strategy: label}) by row number; unnumbered ones last, in the order given."""
    return sorted(labels, key=lambda strategy: row_key(labels[strategy]))


def load_runs(reports: Path, tasks: list[str], strategies: list[str], ratio: float,
              seeds: list[int]) -> dict[tuple[str, str], list[dict]]:
    """Per (task, strategy) at ``ratio``, one run per fine-tuned model (fine-tuning seed × pruning seed): its test
    metrics from the finetune stage's cell record (``reports/cells``) beside its architecture's latency, speed-up and
    FLOPs from the latency stage (``reports/latency``), which measured each pruned model once."""
    runs = {}
    for task in tasks:
        latency = json.loads((reports / "latency" / f"{task}.json").read_text())
        for strategy in strategies:
            name = model_name(strategy, ratio)
            cells = [json.loads((reports / "cells" / task / name / f"seed-{seed}.json").read_text()) for seed in seeds]
            runs[(task, strategy)] = [
                {**latency[f"{name}/seed-{pruning_seed}"], "test": run["test"], "finetune_seed": seed,
                 "pruning_seed": int(pruning_seed), "machine": machine_label(cell["machine"])}
                for seed, cell in zip(seeds, cells) for pruning_seed, run in cell["runs"].items()]
    return runs


def machine_label(machine: dict) -> str:
    """The machine a model was fine-tuned on, as far as its float results depend on it
    (:func:`mcap.evaluate.machine_record`): two CPUs that report the same name can be of different families or
    models, and a rerun reproduces a result bit for bit only on the same one."""
    cpu = machine["cpu"]
    processor = f"{cpu['model_name']} (family {cpu['family']}, model {cpu['model']})"
    return processor if machine["device"].startswith("CPU") else f"{machine['device']} with {processor}"


def machines_line(cells: pd.DataFrame) -> str:
    """Which machines fine-tuned the cells, and how many each: a grid run in chunks may span several (DVC reruns
    only what changed; a model whose inputs are byte for byte the same keeps its first machine's result)."""
    counts = cells["machine"].value_counts()
    return "Fine-tuned on " + "; ".join(f"{machine}: {count} models" for machine, count in counts.items()) + "."


QUALITY = ("mcc", "loss", "accuracy")


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (NaN for a single value)."""
    array = np.asarray(values, dtype=float)
    return float(array.mean()), float(array.std(ddof=1)) if len(array) > 1 else float("nan")


def build_table(evaluations: dict[tuple[str, str], list[dict]], labels: dict[str, str]) -> pd.DataFrame:
    """One row per (task, strategy) in the order of the strategies' ``labels``: quality as mean and std over its
    fine-tuned models (pruning × fine-tuning seeds), cost from the first, latency and the measured speed-up over the
    unpruned twin (timed interleaved by the latency stage) averaged over them."""
    tasks = list(dict.fromkeys(task for task, _ in evaluations))
    rows = []
    for task in tasks:
        for strategy in row_order({s: labels[s] for t, s in evaluations if t == task}):
            runs = evaluations[(task, strategy)]
            first = runs[0]
            row: dict[str, Any] = {
                "task": task,
                "strategy": strategy,
                "label": labels[strategy],
                "seeds": len(runs),  # fine-tuned models: pruning seeds × fine-tuning seeds
                "heads": first["heads"],
                "nonzero_params_M": first["nonzero_parameters"] / 1e6,
                "gflops_dense": first["flops"]["mean_length"]["dense"] / 1e9,
                "gflops_nonzero": first["flops"]["mean_length"]["nonzero"] / 1e9,
            }
            for metric in QUALITY:
                row[metric], row[f"{metric}_std"] = mean_std([run["test"][metric] for run in runs])
            for batch in first["latency_ms"]:
                row[f"latency_{batch}_ms"] = float(np.mean([run["latency_ms"][batch]["median"] for run in runs]))
                row[f"latency_{batch}_iqr"] = float(np.mean([run["latency_ms"][batch]["iqr"] for run in runs]))
                row[f"mac_estimate_{batch}"] = first["mac_estimate"][batch]["speedup"]  # same shapes for every seed
                if batch in first.get("speedup", {}):
                    row[f"speedup_{batch}"] = float(np.mean([run["speedup"][batch]["median"] for run in runs]))
                    row[f"speedup_{batch}_vs_estimate"] = row[f"speedup_{batch}"] / row[f"mac_estimate_{batch}"]
            rows.append(row)
    return pd.DataFrame(rows)


def cells_table(runs: dict[tuple[str, str], list[dict]], ratio: float) -> pd.DataFrame:
    """One row per fine-tuned model (:data:`mcap.paired.CELL_KEYS`, its test MCC, accuracy and loss, and the machine
    that fine-tuned it) of the :func:`load_runs` at ``ratio``."""
    from mcap.paired import CELL_KEYS

    rows = [{"task": task, "strategy": strategy, "ratio": ratio, "pruning_seed": run["pruning_seed"],
             "finetune_seed": run["finetune_seed"], **{metric: run["test"][metric] for metric in QUALITY},
             "machine": run["machine"]}
            for (task, strategy), by_model in runs.items() for run in by_model]
    return pd.DataFrame(rows, columns=[*CELL_KEYS, *QUALITY, "machine"])


def paired_markdown(paired: pd.DataFrame, labels: dict[str, str]) -> str:
    """The paired MCC differences as a table, with the verdict each interval allows."""
    from mcap.paired import verdict

    header = ["Task", "Ratio", "Pruning technique", "Against", "Pairs", "Mean ΔMCC", "95% interval", "Reading"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for _, row in paired.iterrows():
        interval = "–" if pd.isna(row["ci_low"]) else f"[{row['ci_low']:+.4f}, {row['ci_high']:+.4f}]"
        lines.append(f"| {row['task']} | {row['ratio']:g} | {labels.get(row['strategy'], row['strategy'])} | "
                     f"{row['reference']} | {row['n_pairs']} | {row['mean_delta']:+.4f} | {interval} | {verdict(row)} |")
    return "\n".join(lines)


def _cell(value: float, digits: int, std: float = float("nan")) -> str:
    if pd.isna(value):
        return "–"
    return f"{value:.{digits}f}" if pd.isna(std) else f"{value:.{digits}f} ± {std:.{digits}f}"


def markdown_table(table: pd.DataFrame, task: str) -> str:
    frame = table[table["task"] == task]
    batches = [c.removeprefix("latency_").removesuffix("_ms") for c in frame.columns if c.startswith("latency_") and c.endswith("_ms")]
    header = (["Pruning technique", "Heads"] + [f"Latency {b.replace('_', ' ')} (ms, median ± IQR)" for b in batches]
              + ["GFLOPs dense", "GFLOPs non-zero", "MCC", "Loss", "Accuracy"]
              + [f"Speed-up {b.replace('_', ' ')}" for b in batches] + [f"MAC estimate {b.replace('_', ' ')}" for b in batches]
              + [f"Speed-up {batches[-1].replace('_', ' ')} / estimate"])
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for _, row in frame.iterrows():
        cells = [row["label"], str(row["heads"])]
        cells += [f"{row[f'latency_{b}_ms']:.1f} ± {row[f'latency_{b}_iqr']:.1f}" for b in batches]
        cells += [_cell(row["gflops_dense"], 3), _cell(row["gflops_nonzero"], 3)]
        cells += [_cell(row[metric], 4, row[f"{metric}_std"]) for metric in QUALITY]
        cells += [_cell(row.get(f"speedup_{b}", float("nan")), 2) for b in batches]
        cells += [_cell(row[f"mac_estimate_{b}"], 2) for b in batches]
        cells += [_cell(row.get(f"speedup_{batches[-1]}_vs_estimate", float("nan")), 2)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def paper_table_markdown() -> str:
    header = ["Pruning technique (paper)", "SST-2 latency (ms)", "SST-2 FLOPs (avg)", "SST-2 MCC", "SST-2 loss",
              "CoLA latency (ms)", "CoLA FLOPs (avg)", "CoLA MCC", "CoLA loss"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(value) for value in row) + " |" for row in PAPER_TABLE_I]
    return "\n".join(lines)


def mcap_section(cnn_metrics: dict) -> list[str]:
    """What the pattern CNN learned and what it sees in the real model's heads."""
    shares = cnn_metrics["head_pattern_share"]
    patterns = list(next(iter(shares.values())))
    lines = [
        "## MCAP components", "",
        (f"Pattern CNN (5 convolutions) trained on {cnn_metrics['train_maps']} maps from {cnn_metrics['source']}: "
        f"held-out accuracy **{cnn_metrics['heldout_accuracy']:.3f}** on {cnn_metrics['heldout_maps']} maps "
        "(synthetic maps stand in for the paper's 1,000 hand-labelled ones; see docs/method.md)."), "",
        "Share of the pre-trained model's heads the CNN assigns to each pattern:", "",
        "| Task | " + " | ".join(patterns) + " |", "|" + "---|" * (len(patterns) + 1),
    ]
    lines += [f"| {task} | " + " | ".join(f"{share[p]:.2f}" for p in patterns) + " |" for task, share in shares.items()]
    return lines + [""]


def render_report(table: pd.DataFrame, tasks: list[str], setup: str, transfer_tasks: list[str] = (),
                  meta_trained_on: list[str] = (), cnn_metrics: dict | None = None,
                  paired: pd.DataFrame | None = None) -> str:
    """The whole reports/table1.md: Table I per task, the transfer tasks, the paired differences, MCAP's CNN, then the
    paper's Table I."""
    parts = ["# Table I — our measurements", "", setup, ""]
    ratios = sorted(table["ratio"].unique())
    for ratio in ratios:
        at = table[table["ratio"] == ratio]
        suffix = f", ratio {ratio:g}" if len(ratios) > 1 else ""
        for task in tasks:
            parts += [f"## {task}{suffix}", "", markdown_table(at, task), ""]
        for task in transfer_tasks:
            parts += [f"## {task} — transfer{suffix}", "",
                      (f"The meta-controller was trained on {', '.join(meta_trained_on)} only; its masks for {task} "
                       "come without any training on it."), "",
                      markdown_table(at, task), ""]
    if paired is not None:
        labels = dict(zip(table["strategy"], table["label"]))
        parts += ["## Paired differences", "",
                  ("Test MCC of each strategy minus a reference's, paired on the fine-tuning seed (the same task head, "
                   "batch order and test sentences), with a 95% bootstrap interval over the fine-tuning and pruning "
                   "seeds (docs/method.md, Measurement protocol). \"Better\" or \"worse\" only where the interval "
                   "excludes 0; one fine-tuning seed gives no interval. Every cell: reports/comparison/cells.csv."), "",
                  paired_markdown(paired, labels), ""]
    if cnn_metrics is not None:
        parts += mcap_section(cnn_metrics)
    parts += [
        "## The paper's Table I (their numbers, BERT-base, full data; not produced by this pipeline)", "",
        paper_table_markdown(), "",
        ("Their FLOPs column is unlabelled in units and their latency conditions are not stated; "
        "compare orderings, not magnitudes."), "",
    ]
    return "\n".join(parts)


def summary(table: pd.DataFrame) -> dict[str, dict[str, dict[str, float]]]:
    """{task: {strategy: test MCC and loss (means over its fine-tuned models) and the measured speed-up at the largest
    batch}} (``<task>@<ratio>`` where the grid has several ratios): the pipeline's one ``dvc metrics`` file, small
    enough that ``dvc metrics diff`` between branches fits on a screen (every other number is in table1.csv, the
    cells and the per-stage records)."""
    largest = max((c for c in table.columns if c.startswith("speedup_batch_") and c.count("_") == 2),
                  key=lambda column: int(column.rsplit("_", 1)[1]))
    several = table["ratio"].nunique() > 1
    return {
        f"{task}@{ratio:g}" if several else task: {
            row["strategy"]: {"mcc": round(float(row["mcc"]), 4), "loss": round(float(row["loss"]), 4),
                              largest.replace("_batch_", "_b"): round(float(row[largest]), 4)}
            for _, row in frame.iterrows()}
        for (task, ratio), frame in table.groupby(["task", "ratio"], sort=False)
    }
