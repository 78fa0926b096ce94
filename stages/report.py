"""Stage report: reports/table1.{md,csv}, reports/summary.json (the metrics file) and the paired comparison
(reports/comparison/cells.csv, paired.csv) from every evaluation."""

import json
from pathlib import Path

from mcap.cli import run_stage
from mcap.outputs import write_json
from mcap.paired import paired_table
from mcap.report import build_table, cells_table, load_evaluations, read_labels, render_report, summary

REPORTS = Path("reports")


def main(params, args):
    tasks, transfer_tasks, seeds = params.tasks, params.transfer.tasks, params.seeds
    groups = [(tasks, params.all_strategies()), (transfer_tasks, params.transfer.strategies + params.mcap.strategies)]
    evaluations = load_evaluations(REPORTS / "evaluate", groups, seeds)
    labels = {strategy: label for group_tasks, strategies in groups for task in group_tasks
              for strategy, label in read_labels(REPORTS / "prune", task, strategies).items()}
    table = build_table(evaluations, labels)
    devices = sorted({run.get("device_name", run["device"]) for runs in evaluations.values() for run in runs})
    cnn_metrics = {**json.loads((REPORTS / "mcap" / "cnn" / "metrics.json").read_text()),
                   **json.loads((REPORTS / "mcap" / "head_patterns.json").read_text())}
    setup = (
        f"Model `{params.model.name_or_path}`, pruning ratio {params.prune.ratio}, "
        f"{params.train.epochs} epoch(s), lr grid {params.train.learning_rates}, "
        f"{params.data.caps()} "
        f"(null = full data), fine-tuning seeds {seeds} (quality is mean ± std where more than one ran), "
        f"measured on {', '.join(devices)} with {params.evaluate.threads} threads. "
        f"Latency: forward pass on real test sentences (batch sizes {params.evaluate.batch_sizes}), "
        "median ± IQR. "
        "Speed-up: median per-repetition time ratio of the unpruned architecture to this model, the two timed "
        "alternately in one process (the unpruned row measures the noise floor, ideally 1.00). "
        "GFLOPs per sequence at the test set's mean length; 'non-zero' counts only non-zero encoder weights. "
        "MAC estimate: the speed-up if time were proportional to encoder MACs, counted at the padded shapes of the "
        "timed batches; an estimate, not a bound (softmax, scaling and masking also shrink with the heads and are "
        "not MACs)."
    )
    cells = cells_table(evaluations, params.prune.ratio, params.seed, seeds)
    paired = paired_table(cells)
    (REPORTS / "comparison").mkdir(parents=True, exist_ok=True)
    cells.to_csv(REPORTS / "comparison" / "cells.csv", index=False, float_format="%.6g")
    paired.to_csv(REPORTS / "comparison" / "paired.csv", index=False, float_format="%.6g")
    (REPORTS / "table1.md").write_text(
        render_report(table, tasks, setup, transfer_tasks, params.mcap.train_tasks, cnn_metrics, paired))
    table.to_csv(REPORTS / "table1.csv", index=False, float_format="%.6g")
    write_json(REPORTS / "summary.json", summary(table))


if __name__ == "__main__":
    run_stage(main)
