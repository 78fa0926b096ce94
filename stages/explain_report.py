"""Stage explain_report: Table III analogue (LIME on T2), faithfulness table and plot, agreement metrics."""

from pathlib import Path

from mcap.cli import run_stage
from mcap.explain_report import write_reports
from mcap.outputs import write_json
from mcap.params import get

OUT = Path("reports/explain")


def main(params, args):
    summaries = write_reports(OUT / "models", OUT, get(params, "explain.tasks", list),
                              get(params, "prune.strategies", list), get(params, "explain.top_k", int),
                              get(params, "seed", int))
    write_json(OUT / "summary.json", summaries)


if __name__ == "__main__":
    run_stage(main)
