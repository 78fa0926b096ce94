"""Stage explain_report: Table III analogue (LIME on T2), faithfulness table and plot, agreement metrics."""

from pathlib import Path

from mcap.cli import run_stage
from mcap.explain_report import write_reports
from mcap.outputs import write_json
from mcap.report import read_labels

OUT = Path("reports/explain")


def main(params, args):
    strategies, ratios = params.strategies, params.prune.ratios
    labels = {task: read_labels(Path("reports/prune"), task, strategies, ratios[0]) for task in params.explain.tasks}
    summaries = write_reports(OUT / "models", OUT, labels, ratios, params.explain.top_k, params.explain.seed)
    write_json(OUT / "summary.json", summaries)


if __name__ == "__main__":
    run_stage(main)
