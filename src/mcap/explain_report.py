"""Explanation reports across models: the paper's Table III analogue, faithfulness, agreement."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from mcap.explain import jaccard
from mcap.figures import saved_figure
from mcap.report import ROW_LABELS, row_order

UNPRUNED = "none"


def load_explanations(models_dir: Path, task: str, strategies: list[str]) -> dict[str, dict]:
    return {s: json.loads((models_dir / f"{task}-{s}" / "explanations.json").read_text()) for s in row_order(strategies)}


def _signed(weight: float) -> str:
    return f"({'+' if weight > 0 else '−'}) {abs(weight):.2f}"


def lime_table(explanations: dict[str, dict], text_name: str = "T2", columns: int = 6) -> str:
    """Table III: per model the prediction probability and LIME's word contributions for one text.

    Columns are the unpruned model's strongest words (or the first model's when it did not run).
    """
    reference = explanations.get(UNPRUNED, next(iter(explanations.values())))["texts"][text_name]
    if "skipped" in reference:
        return f"{text_name} was skipped: {reference['skipped']}"
    pairs = sorted(zip(reference["lime"]["words"], reference["lime"]["weights"]), key=lambda p: -abs(p[1]))
    words = [word for word, _ in pairs[:columns]]
    lines = [f"Text {text_name}: “{reference['text']}”", "",
             "| Model | PP | " + " | ".join(words) + " |", "|" + "---|" * (len(words) + 2)]
    for strategy, record in explanations.items():
        lime = record["texts"][text_name]["lime"]
        weights = dict(zip(lime["words"], lime["weights"]))
        probability = max(lime["probability_positive"], 1 - lime["probability_positive"])
        cells = [_signed(weights[w]) if w in weights else "–" for w in words]
        lines.append(f"| {ROW_LABELS.get(strategy, strategy)} | {probability:.2f} | " + " | ".join(cells) + " |")
    lines += ["", ("PP: probability of the predicted class. (−) pushes towards negative, (+) towards positive "
              "(LIME weights for P(positive)).")]
    return "\n".join(lines)


def agreement(explanations: dict[str, dict], method: str) -> dict[str, float]:
    """Mean Jaccard similarity of each model's top words with the unpruned model's, per sentence."""
    if UNPRUNED not in explanations:
        return {}
    reference = explanations[UNPRUNED]["faithfulness"]
    return {strategy: float(np.mean([jaccard(row[method]["top_words"], ref[method]["top_words"])
                                     for row, ref in zip(record["faithfulness"], reference)]))
            for strategy, record in explanations.items()}


def faithfulness_summary(explanations: dict[str, dict]) -> dict[str, dict[str, float]]:
    """Per model: mean comprehensiveness/sufficiency of LIME and SHAP, and top-word agreement with ``none``."""
    agree = {method: agreement(explanations, method) for method in ("lime", "shap")}
    summary = {}
    for strategy, record in explanations.items():
        rows = record["faithfulness"]
        summary[strategy] = {f"{method}_{measure}": float(np.mean([row[method][measure] for row in rows]))
                             for method in ("lime", "shap") for measure in ("comprehensiveness", "sufficiency")}
        for method in ("lime", "shap"):
            if strategy in agree[method]:
                summary[strategy][f"{method}_jaccard_vs_unpruned"] = agree[method][strategy]
    return summary


def faithfulness_table(summary: dict[str, dict[str, float]], top_k: int, sentences: int) -> str:
    keys = ["lime_comprehensiveness", "lime_sufficiency", "shap_comprehensiveness", "shap_sufficiency",
            "lime_jaccard_vs_unpruned", "shap_jaccard_vs_unpruned"]
    header = ["LIME comprehensiveness ↑", "LIME sufficiency ↓", "SHAP comprehensiveness ↑", "SHAP sufficiency ↓",
              "LIME top-k Jaccard vs unpruned", "SHAP top-k Jaccard vs unpruned"]
    lines = [(f"Mean over {sentences} test sentences; rationale = each explanation's top {top_k} words for the "
             "predicted class (DeYoung et al. 2020)."), "",
             "| Model | " + " | ".join(header) + " |", "|" + "---|" * (len(header) + 1)]
    for strategy, values in summary.items():
        cells = [f"{values[k]:.3f}" if k in values else "–" for k in keys]
        lines.append(f"| {ROW_LABELS.get(strategy, strategy)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def most_faithful(summary: dict[str, dict[str, float]], method: str) -> str:
    """The model whose ``method`` explanations have the largest comprehensiveness − sufficiency."""
    return max(summary, key=lambda s: summary[s][f"{method}_comprehensiveness"] - summary[s][f"{method}_sufficiency"])


def plot_faithfulness(summary: dict[str, dict[str, float]], task: str, path: Path) -> None:
    strategies = list(summary)
    keys = ["lime_comprehensiveness", "lime_sufficiency", "shap_comprehensiveness", "shap_sufficiency"]
    with saved_figure(path, figsize=(1.2 * len(strategies) + 2, 3.6)) as (_fig, ax):
        width = 0.8 / len(keys)
        for index, key in enumerate(keys):
            ax.bar(np.arange(len(strategies)) + index * width, [summary[s][key] for s in strategies], width,
                   label=key.replace("_", " "))
        ax.set_xticks(np.arange(len(strategies)) + 0.4 - width / 2, strategies, rotation=30, ha="right", fontsize=8)
        ax.axhline(0, color="black", linewidth=0.8)
        ax.set(ylabel="Δ P(predicted class)", title=f"{task}: faithfulness (comprehensiveness ↑, sufficiency ↓)")
        ax.legend(fontsize=7)


def write_reports(models_dir: Path, out_dir: Path, tasks: list[str], strategies: list[str], top_k: int) -> dict:
    """Write lime_table.md, faithfulness.md and one faithfulness figure per task; return the per-task summaries."""
    lime_parts = ["# LIME explanations of T2 (the paper's Table III)", ""]
    faithfulness_parts = ["# Faithfulness of LIME and SHAP explanations", ""]
    summaries = {}
    for task in tasks:
        explanations = load_explanations(models_dir, task, strategies)
        summary = faithfulness_summary(explanations)
        best = {method: most_faithful(summary, method) for method in ("lime", "shap")}
        summaries[task] = {**summary, "most_faithful": best}
        skipped = [f"{strategy}: {name} ({record['skipped']})" for strategy, explanation in explanations.items()
                   for name, record in explanation["texts"].items() if "skipped" in record]
        lime_parts += [f"## {task}", "", lime_table(explanations), ""]
        if skipped:
            lime_parts += ["Skipped texts: " + "; ".join(skipped), ""]
        sentences = len(next(iter(explanations.values()))["faithfulness"])
        figure = Path("figures") / f"faithfulness_{task}.png"
        plot_faithfulness(summary, task, out_dir / figure)
        faithfulness_parts += [
            f"## {task}", "", faithfulness_table(summary, top_k, sentences), "",
            f"Most faithful (comprehensiveness − sufficiency): LIME → {best['lime']}, SHAP → {best['shap']}.", "",
            f"![faithfulness]({figure.as_posix()})", "",
        ]
    (out_dir / "lime_table.md").write_text("\n".join(lime_parts))
    (out_dir / "faithfulness.md").write_text("\n".join(faithfulness_parts))
    return summaries
