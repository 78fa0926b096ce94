"""Stage explain_report: Table III analogue (LIME on T2), faithfulness table and plot, agreement metrics."""

from pathlib import Path

from mcap.cli import run_stage
from mcap.explain_report import write_reports
from mcap.outputs import write_json
from mcap.params import all_strategies, get
from mcap.report import read_labels

OUT = Path("reports/explain")


def main(params, args):
    strategies = all_strategies(params)
    labels = {task: read_labels(Path("reports/prune"), task, strategies) for task in get(params, "explain.tasks", list)}
    summaries = write_reports(OUT / "models", OUT, labels, get(params, "explain.top_k", int), get(params, "seed", int))
    write_json(OUT / "summary.json", summaries)


if __name__ == "__main__":
    run_stage(main)
