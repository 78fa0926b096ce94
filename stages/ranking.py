"""Stage ranking: the linear-probe score of every head strategy's ranking, per task, ratio and pruning seed."""

from pathlib import Path

import pandas as pd

from mcap.cli import run_stage
from mcap.errors import McapError
from mcap.modeling import load_pretrained
from mcap.outputs import atomic_dir
from mcap.params import all_strategies, check_ratio, get
from mcap.ranking import plot_ranking, rank_points
from mcap.splits import read_split
from mcap.strategies import PruneContext, get_strategy

OUT_DIR = Path("reports/ranking")


def main(params, args):
    strategies = all_strategies(params)
    for name in strategies:
        get_strategy(name)  # fail on an unknown name before loading anything
    ratios = [check_ratio(ratio, "ranking.ratios") for ratio in get(params, "ranking.ratios", list)]
    seeds = get(params, "ranking.seeds", list)
    if not seeds or not all(isinstance(seed, int) and not isinstance(seed, bool) for seed in seeds):
        raise McapError(f"params.yaml: 'ranking.seeds' must be a non-empty list of integers, got {seeds!r}")
    frames = []
    for task in get(params, "tasks", list):
        model, tokenizer = load_pretrained(get(params, "model.name_or_path", str), get(params, "seed", int))
        processed = Path("data/processed") / task
        context = PruneContext(
            model=model.eval(), tokenizer=tokenizer, task=task, train=read_split(processed, "train"), ratio=0.0,
            seed=seeds[0], options=get(params, "prune", dict), max_seq_len=get(params, "train.max_seq_len", int),
            batch_size=get(params, "train.batch_size", int),
        )
        frames.append(rank_points(context, read_split(processed, "validation"), strategies, ratios, seeds,
                                  get(params, "ranking.train_examples", int)))
    points = pd.concat(frames, ignore_index=True)
    with atomic_dir(OUT_DIR) as staging:
        points.to_csv(staging / "ranking.csv", index=False, float_format="%.6g")
        plot_ranking(points, staging / "ranking.png")


if __name__ == "__main__":
    run_stage(main)
