"""Stage ranking@<task> (ranking.tasks): the linear-probe score of every head strategy's ranking, per ratio and pruning
seed, and each ranking's Spearman agreement with head_gradient's at the first pruning seed. A learned strategy is
scored at each ratio with its controllers trained at that ratio, or at the nearest of prune.ratios (the column
scores_ratio). The probe's train sentences come after the controllers' pool (mcap.pool_examples)."""

import json
from pathlib import Path

from mcap.cli import run_stage
from mcap.errors import McapError
from mcap.modeling import load_pretrained
from mcap.outputs import atomic_dir, write_json
from mcap.ranking import plot_ranking, rank_points, ranking_scores, reference_agreement
from mcap.score_files import learned_scores_path
from mcap.splits import read_split
from mcap.strategies import PruneContext, get_strategy
from mcap.strategies.base import LearnedStrategy


def main(params, args):
    task, strategies, ranking = args.task, params.strategies, params.ranking
    learned = {}
    for strategy in strategies:
        if isinstance(get_strategy(strategy), LearnedStrategy):
            if task not in params.mcap_train_tasks():
                raise McapError(f"params.yaml: 'ranking.tasks' lists {task!r}, which no controller trained on; the "
                                f"ranking scores {strategy!r} with its controllers' scores for mcap.train_tasks")
            learned[strategy] = {ratio: json.loads(learned_scores_path(strategy, ratio, task).read_text())["delta_by_seed"]
                                 for ratio in params.prune.ratios}
    model, tokenizer = load_pretrained(params.model.name_or_path, ranking.seeds[0])
    processed = Path("data/processed") / task
    context = PruneContext.of(params, model.eval(), tokenizer, task, read_split(processed, "train"), ranking.seeds[0],
                              ratio=0.0)
    scores = ranking_scores(context, strategies, ranking.seeds, learned)
    pooled = len(context.train) if params.mcap.pool_examples is None else params.mcap.pool_examples  # None: all
    points = rank_points(context, read_split(processed, "validation"), scores, ranking.ratios, ranking.train_examples,
                         ranking.seeds[0], pooled, params.mcap.k)
    with atomic_dir(Path("reports/ranking") / task) as staging:
        points.to_csv(staging / "ranking.csv", index=False, float_format="%.6g")
        plot_ranking(points, staging / "ranking.png")
        write_json(staging / "agreement.json", {task: reference_agreement(scores, ranking.seeds[0])})


if __name__ == "__main__":
    run_stage(main, "task")
