"""Stage report: Table I (reports/table1.{md,csv}), the grid's cells and paired comparison
(reports/comparison/cells.csv, paired.csv) and reports/summary.json (the metrics file), from every fine-tuned model's
test metrics (the finetune stages) and every pruned architecture's latency (the latency stages)."""

import json
from pathlib import Path

import pandas as pd

from mcap.cli import run_stage
from mcap.outputs import write_json
from mcap.paired import paired_table
from mcap.report import build_table, cells_table, load_runs, machines_line, read_labels, render_report, summary

REPORTS = Path("reports")


def main(params, args):
    tasks, transfer_tasks, seeds, strategies = params.tasks, params.transfer_tasks(), params.seeds, params.strategies
    ratios, first = params.prune.ratios, params.prune.ratios[0]
    labels = {strategy: label for task in tasks for strategy, label in
              read_labels(REPORTS / "prune", task, strategies, first).items()}
    tables, cells, devices = [], [], set()
    for ratio in ratios:
        runs = load_runs(REPORTS, tasks, strategies, ratio, seeds)
        tables.append(build_table(runs, labels).assign(ratio=ratio))
        cells.append(cells_table(runs, ratio))
        devices |= {run["device_name"] for by_model in runs.values() for run in by_model}
    table, cells = pd.concat(tables, ignore_index=True), pd.concat(cells, ignore_index=True)
    paired = paired_table(cells)
    cnn_metrics = {**json.loads((REPORTS / "mcap" / "cnn" / "metrics.json").read_text()),
                   **json.loads((REPORTS / "mcap" / "head_patterns.json").read_text())}
    setup = (
        f"Model `{params.model.name_or_path}`, pruning ratios {ratios}, pruning seeds {params.prune.seeds} (a strategy "
        f"that draws nothing from them runs at the first), fine-tuning seeds {seeds}; quality is mean ± std over a "
        f"strategy's fine-tuned models where more than one ran. {params.train.epochs} epoch(s), lr grid "
        f"{params.train.learning_rates}, {params.data.caps()} (null = full data). Timed on "
        f"{', '.join(sorted(devices))} with {params.evaluate.threads} threads, once per "
        "pruned architecture (the latency stage). Latency: forward pass on real test sentences (batch sizes "
        f"{params.evaluate.batch_sizes}), median ± IQR. "
        "Speed-up: median per-repetition time ratio of the unpruned architecture to this model, the two timed "
        "alternately in one process (the unpruned row measures the noise floor, ideally 1.00). "
        "GFLOPs per sequence at the test set's mean length; 'non-zero' counts only non-zero encoder weights. "
        "MAC estimate: the speed-up if time were proportional to encoder MACs, counted at the padded shapes of the "
        "timed batches; an estimate, not a bound (softmax, scaling and masking also shrink with the heads and are "
        f"not MACs). {machines_line(cells)}"
    )
    (REPORTS / "comparison").mkdir(parents=True, exist_ok=True)
    cells.to_csv(REPORTS / "comparison" / "cells.csv", index=False, float_format="%.6g")
    paired.to_csv(REPORTS / "comparison" / "paired.csv", index=False, float_format="%.6g")
    main_tasks = [task for task in tasks if task not in transfer_tasks]
    (REPORTS / "table1.md").write_text(
        render_report(table, main_tasks, setup, transfer_tasks, params.mcap.train_tasks, cnn_metrics, paired))
    table.to_csv(REPORTS / "table1.csv", index=False, float_format="%.6g")
    write_json(REPORTS / "summary.json", summary(table))


if __name__ == "__main__":
    run_stage(main)
