"""Stage ranking: the linear-probe score of every head strategy's ranking, per task, ratio and pruning seed, and
each ranking's Spearman agreement with head_gradient's at the first pruning seed."""

from pathlib import Path

import pandas as pd

from mcap.cli import run_stage
from mcap.modeling import load_pretrained
from mcap.outputs import atomic_dir, write_json
from mcap.ranking import plot_ranking, rank_points, ranking_scores, reference_agreement
from mcap.splits import read_split
from mcap.strategies import PruneContext, get_strategy

OUT_DIR = Path("reports/ranking")


def main(params, args):
    strategies, ranking = params.all_strategies(), params.ranking
    for name in strategies:
        get_strategy(name)  # fail on an unknown name before loading anything
    frames, agreement = [], {}
    for task in params.tasks:
        model, tokenizer = load_pretrained(params.model.name_or_path, params.seed)
        processed = Path("data/processed") / task
        context = PruneContext.of(params, model.eval(), tokenizer, task, read_split(processed, "train"),
                                  ranking.seeds[0], ratio=0.0)
        scores = ranking_scores(context, strategies, ranking.seeds)
        frames.append(rank_points(context, read_split(processed, "validation"), scores, ranking.ratios,
                                  ranking.train_examples, ranking.seeds[0]))
        agreement[task] = reference_agreement(scores, ranking.seeds[0])
    points = pd.concat(frames, ignore_index=True)
    with atomic_dir(OUT_DIR) as staging:
        points.to_csv(staging / "ranking.csv", index=False, float_format="%.6g")
        plot_ranking(points, staging / "ranking.png")
        write_json(staging / "agreement.json", agreement)


if __name__ == "__main__":
    run_stage(main)
