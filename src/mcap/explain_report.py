"""Explanation reports across models: the paper's Table III analogue, faithfulness, agreement."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from mcap.explain import MEASURES, METHODS, jaccard
from mcap.figures import saved_figure
from mcap.report import row_order

UNPRUNED = "none"


def load_explanations(models_dir: Path, task: str, labels: dict[str, str], ratio: float) -> dict[str, dict]:
    """Each strategy's explanations at ``ratio`` (``labels``: {strategy: Table I label}), in the order of Table I's
    rows, with its label."""
    return {s: {**json.loads((models_dir / f"{task}-{s}-{ratio}" / "explanations.json").read_text()), "label": labels[s]}
            for s in row_order(labels)}


def _signed(weight: float) -> str:
    return f"({'+' if weight > 0 else '−'}) {abs(weight):.2f}"


def lime_table(explanations: dict[str, dict], text_name: str = "T2", columns: int = 6) -> str:
    """Table III: per model the prediction probability and LIME's word contributions for one text.

    Columns are the word positions the unpruned model weighs most (or the first model's when it did not run).
    """
    reference = explanations.get(UNPRUNED, next(iter(explanations.values())))["texts"][text_name]
    if "skipped" in reference:
        return f"{text_name} was skipped: {reference['skipped']}"
    words, weights = reference["lime"]["words"], reference["lime"]["weights"]
    positions = sorted(range(len(words)), key=lambda p: -abs(weights[p]))[:columns]
    lines = [f"Text {text_name}: “{reference['text']}”", "",
             "| Model | PP | " + " | ".join(words[p] for p in positions) + " |", "|" + "---|" * (len(positions) + 2)]
    for record in explanations.values():
        lime = record["texts"][text_name]["lime"]
        probability = max(lime["probability_positive"], 1 - lime["probability_positive"])
        cells = [_signed(lime["weights"][p]) for p in positions]
        lines.append(f"| {record['label']} | {probability:.2f} | " + " | ".join(cells) + " |")
    lines += ["", ("PP: probability of the predicted class. (−) pushes towards negative, (+) towards positive "
              "(LIME weights for P(positive), one per word position).")]
    return "\n".join(lines)


def agreement(explanations: dict[str, dict], method: str) -> dict[str, float]:
    """Mean Jaccard similarity of each model's rationale positions with the unpruned model's, per sentence."""
    if UNPRUNED not in explanations:
        return {}
    reference = explanations[UNPRUNED]["faithfulness"]
    return {strategy: float(np.mean([jaccard(row[method]["rationale"], ref[method]["rationale"])
                                     for row, ref in zip(record["faithfulness"], reference)]))
            for strategy, record in explanations.items()}


def bootstrap_interval(values: np.ndarray, resample_index: np.ndarray) -> tuple[float, float]:
    """Percentile 95% interval of the mean of ``values`` over the rows of ``resample_index`` (R, N)."""
    means = values[resample_index].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return float(low), float(high)


def faithfulness_summary(explanations: dict[str, dict], seed: int, resamples: int = 2000) -> dict[str, dict[str, float]]:
    """Per model and method: mean comprehensiveness, sufficiency and their difference (``faithfulness``,
    higher = more faithful) with bootstrap 95% intervals over the test sentences, and rationale agreement
    with ``none``. Every model is resampled with the same sentence indices (they explain the same sentences)."""
    agree = {method: agreement(explanations, method) for method in METHODS}
    sentences = len(next(iter(explanations.values()))["faithfulness"])
    resample_index = np.random.default_rng(seed).integers(0, sentences, size=(resamples, sentences))
    summary = {}
    for strategy, record in explanations.items():
        values = {}
        for method in METHODS:
            measures = {measure: np.array([row[method][measure] for row in record["faithfulness"]]) for measure in MEASURES}
            measures["faithfulness"] = measures["comprehensiveness"] - measures["sufficiency"]
            for measure, array in measures.items():
                key = f"{method}_{measure}"
                values[key] = float(array.mean())
                values[f"{key}_ci_low"], values[f"{key}_ci_high"] = bootstrap_interval(array, resample_index)
            if strategy in agree[method]:
                values[f"{method}_jaccard_vs_unpruned"] = agree[method][strategy]
        summary[strategy] = values
    return summary


def faithfulness_table(summary: dict[str, dict[str, float]], labels: dict[str, str], top_k: int, sentences: int) -> str:
    measures = [("comprehensiveness", "comprehensiveness ↑"), ("sufficiency", "sufficiency ↓"),
                ("faithfulness", "comp. − suff. ↑")]
    header = [f"{method.upper()} {label}" for method in METHODS for _, label in measures]
    header += [f"{method.upper()} rationale Jaccard vs unpruned" for method in METHODS]
    lines = [(f"Mean over {sentences} test sentences, with bootstrap 95% intervals in brackets; rationale = the at most "
              f"{top_k} word positions whose attribution supports the predicted class, deleted by position "
              "(DeYoung et al. 2020)."), "",
             "| Model | " + " | ".join(header) + " |", "|" + "---|" * (len(header) + 1)]
    for strategy, values in summary.items():
        cells = [_interval(values, f"{method}_{measure}") for method in METHODS for measure, _ in measures]
        cells += [f"{values[key]:.3f}" if key in values else "–" for key in
                  (f"{method}_jaccard_vs_unpruned" for method in METHODS)]
        lines.append(f"| {labels[strategy]} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _interval(values: dict[str, float], key: str) -> str:
    return f"{values[key]:.3f} [{values[f'{key}_ci_low']:.3f}, {values[f'{key}_ci_high']:.3f}]"


def most_faithful(summary: dict[str, dict[str, float]], method: str) -> str | None:
    """The model with the highest mean comprehensiveness − sufficiency, if its 95% interval lies above
    every other model's; None when the intervals overlap (no model is separated from the rest)."""
    key = f"{method}_faithfulness"
    best = max(summary, key=lambda s: summary[s][key])
    others = [summary[s][f"{key}_ci_high"] for s in summary if s != best]
    return best if all(summary[best][f"{key}_ci_low"] > high for high in others) else None


def plot_faithfulness(summary: dict[str, dict[str, float]], task: str, path: Path) -> None:
    strategies = list(summary)
    keys = ["lime_comprehensiveness", "lime_sufficiency", "shap_comprehensiveness", "shap_sufficiency"]
    with saved_figure(path, figsize=(1.2 * len(strategies) + 2, 3.6)) as (_fig, ax):
        width = 0.8 / len(keys)
        for index, key in enumerate(keys):
            means = np.array([summary[s][key] for s in strategies])
            errors = np.array([[mean - summary[s][f"{key}_ci_low"], summary[s][f"{key}_ci_high"] - mean]
                               for s, mean in zip(strategies, means)]).T  # (2, models): below, above
            ax.bar(np.arange(len(strategies)) + index * width, means, width, yerr=errors, capsize=2,
                   label=key.replace("_", " "))
        ax.set_xticks(np.arange(len(strategies)) + 0.4 - width / 2, strategies, rotation=30, ha="right", fontsize=8)
        ax.axhline(0, color="black", linewidth=0.8)
        ax.set(ylabel="Δ P(predicted class)", title=f"{task}: faithfulness (comprehensiveness ↑, sufficiency ↓), 95% intervals")
        ax.legend(fontsize=7)


def _most_faithful_sentence(best: dict[str, str | None]) -> str:
    named = {method: f"`{strategy}`" if strategy else "no model separated (the best model's 95% interval overlaps "
             "another's)" for method, strategy in best.items()}
    return ("Most faithful (comprehensiveness − sufficiency, named only when its interval lies above every other "
            f"model's): LIME → {named['lime']}; SHAP → {named['shap']}. The intervals cover the choice of test "
            "sentences only: each strategy is one fine-tuned model (the first fine-tuning seed, one pruning seed), "
            "so a separated model is the most faithful of these models, not a property of its strategy.")


def write_reports(models_dir: Path, out_dir: Path, labels: dict[str, dict[str, str]], ratios: list[float], top_k: int,
                  seed: int) -> dict:
    """Write lime_table.md, faithfulness.md and one faithfulness figure per task of ``labels`` ({task: {strategy:
    Table I label}}) and ratio; return the summaries by task (``<task>@<ratio>`` where there are several ratios)."""
    (out_dir / "figures").mkdir(parents=True, exist_ok=True)  # a declared output, empty where no task is explained
    lime_parts = ["# LIME explanations of T2 (the paper's Table III)", ""]
    faithfulness_parts = ["# Faithfulness of LIME and SHAP explanations", ""]
    summaries = {}
    for task, task_labels in labels.items():
        for ratio in ratios:
            key, heading = (f"{task}@{ratio:g}", f"{task}, ratio {ratio:g}") if len(ratios) > 1 else (task, task)
            explanations = load_explanations(models_dir, task, task_labels, ratio)
            summary = faithfulness_summary(explanations, seed)
            best = {method: most_faithful(summary, method) for method in METHODS}
            summaries[key] = {**summary, "most_faithful": best}
            skipped = [f"{strategy}: {name} ({record['skipped']})" for strategy, explanation in explanations.items()
                       for name, record in explanation["texts"].items() if "skipped" in record]
            lime_parts += [f"## {heading}", "", lime_table(explanations), ""]
            if skipped:
                lime_parts += ["Skipped texts: " + "; ".join(skipped), ""]
            sentences = len(next(iter(explanations.values()))["faithfulness"])
            figure = Path("figures") / f"faithfulness_{key.replace('@', '-')}.png"
            plot_faithfulness(summary, heading, out_dir / figure)
            faithfulness_parts += [
                f"## {heading}", "", faithfulness_table(summary, task_labels, top_k, sentences), "",
                _most_faithful_sentence(best), "",
                f"![faithfulness]({figure.as_posix()})", "",
            ]
    (out_dir / "lime_table.md").write_text("\n".join(lime_parts))
    (out_dir / "faithfulness.md").write_text("\n".join(faithfulness_parts))
    return summaries
