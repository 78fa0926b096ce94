"""Stage report: reports/table1.{md,csv} and reports/speedups.json from every benchmark."""

from pathlib import Path

from mcap.cli import run_stage
from mcap.outputs import write_json
from mcap.params import get
from mcap.report import build_table, load_benchmarks, render_report, speedup_summary

REPORTS = Path("reports")


def main(params, args):
    tasks, strategies = get(params, "tasks", list), get(params, "prune.strategies", list)
    table = build_table(load_benchmarks(REPORTS / "benchmark", tasks, strategies), tasks, strategies)
    setup = (
        f"Model `{get(params, 'model.name_or_path', str)}`, pruning ratio {get(params, 'prune.ratio')}, "
        f"{get(params, 'train.epochs', int)} epoch(s), lr grid {get(params, 'train.learning_rates', list)}, "
        f"train/eval caps {get(params, 'data.max_train_examples')}/{get(params, 'data.max_eval_examples')} "
        f"(null = full data), benchmark threads {get(params, 'benchmark.threads', int)}. "
        "Latency: forward pass on real test sentences (batch 1 and 32), median ± IQR. "
        "GFLOPs per sequence at the test set's mean length; 'non-zero' counts only non-zero encoder weights. "
        "MAC bound = 1 / (1 − attention share of encoder MACs × fraction of heads removed)."
    )
    (REPORTS / "table1.md").write_text(render_report(table, tasks, setup))
    table.to_csv(REPORTS / "table1.csv", index=False, float_format="%.6g")
    write_json(REPORTS / "speedups.json", speedup_summary(table))


if __name__ == "__main__":
    run_stage(main)
