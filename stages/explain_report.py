"""Stage explain_report: Table III analogue (LIME on T2), faithfulness table and plot, agreement metrics."""

from pathlib import Path

from mcap.cli import run_stage
from mcap.explain_report import (
    faithfulness_summary,
    faithfulness_table,
    lime_table,
    load_explanations,
    most_faithful,
    plot_faithfulness,
)
from mcap.outputs import write_json
from mcap.params import get

OUT = Path("reports/explain")


def main(params, args):
    strategies, top_k = get(params, "prune.strategies", list), get(params, "explain.top_k", int)
    lime_parts, faithfulness_parts, summaries = ["# LIME explanations of T2 (the paper's Table III)", ""], [
        "# Faithfulness of LIME and SHAP explanations", ""], {}
    for task in get(params, "explain.tasks", list):
        explanations = load_explanations(OUT / "models", task, strategies)
        summary = faithfulness_summary(explanations)
        summaries[task] = {**summary, "most_faithful": {m: most_faithful(summary, m) for m in ("lime", "shap")}}
        skipped = [f"{s}: {name} ({record['skipped']})" for s, e in explanations.items()
                   for name, record in e["texts"].items() if "skipped" in record]
        lime_parts += [f"## {task}", "", lime_table(explanations), ""]
        if skipped:
            lime_parts += ["Skipped texts: " + "; ".join(skipped), ""]
        sentences = len(next(iter(explanations.values()))["faithfulness"])
        faithfulness_parts += [f"## {task}", "", faithfulness_table(summary, top_k, sentences), "",
                               (f"Most faithful (comprehensiveness − sufficiency): LIME → {summaries[task]['most_faithful']['lime']}, "
                               f"SHAP → {summaries[task]['most_faithful']['shap']}."), "", f"![faithfulness](figures/faithfulness_{task}.png)", ""]
        plot_faithfulness(summary, task, OUT / "figures" / f"faithfulness_{task}.png")
    (OUT / "lime_table.md").write_text("\n".join(lime_parts))
    (OUT / "faithfulness.md").write_text("\n".join(faithfulness_parts))
    write_json(OUT / "summary.json", summaries)


if __name__ == "__main__":
    run_stage(main)
