"""Stage prune@<task>: every strategy of ``strategies`` prunes the pre-trained model for the task, at every ratio of
prune.ratios and pruning seed of prune.seeds (the first only, for a strategy that draws nothing from it).

One process per task: a pruning costs seconds, and a model that does not change (an edit to another strategy's
module, a retrained controller of another strategy) is written byte for byte as before, so DVC reruns no
fine-tuning of it. A learned strategy prunes with the scores its controller stage wrote for a task it trained on,
or, for a transfer task, with the scores its trained controllers infer for it here (so a new transfer task retrains
no controller).
"""

import json
from pathlib import Path

from mcap.cli import run_stage
from mcap.errors import McapError
from mcap.grid import PRUNED, model_name, pruned_subdir
from mcap.meta_training import transfer_scores
from mcap.modeling import load_pretrained, save_model
from mcap.outputs import atomic_dir, write_json
from mcap.pruning import plot_head_map, prune_model
from mcap.score_files import learned_scores_path
from mcap.splits import read_split
from mcap.strategies import PruneContext, get_strategy, known_strategies, pruning_seeds
from mcap.strategies.base import LearnedStrategy

REPORTS = Path("reports/prune")


def learned_scores_by_seed(params, strategy: str, task: str, ratio: float, report_dir: Path) -> dict[str, object]:
    """{pruning seed: scores} of a learned strategy for ``task`` at ``ratio``, from its controller stage's file, or
    inferred by its trained controllers for a transfer task (recorded in ``report_dir``/delta.json)."""
    if strategy not in params.mcap.strategies:
        raise McapError(f"params.yaml: 'strategies' lists {strategy!r}, which prunes with a meta-controller's scores: "
                        "list it in 'mcap.strategies' too, so that its controller is trained")
    missing = sorted(set(params.prune.seeds) - set(params.mcap.seeds))
    if missing:
        raise McapError(f"params.yaml: 'prune.seeds' {missing} have no controller of {strategy!r}; add them to "
                        f"'mcap.seeds' (controllers trained: {params.mcap.seeds})")
    if task in params.mcap_train_tasks():
        path = learned_scores_path(strategy, ratio, task)
        if not path.is_file():
            raise McapError(f"{path}: missing; the controller stage of {strategy!r} at ratio {ratio} writes it")
        record = json.loads(path.read_text())
    else:
        record = transfer_scores(strategy, task, ratio, params)
        write_json(report_dir / "delta.json", record)
    return record["delta_by_seed"]


def main(params, args):
    task, strategies = args.task, params.strategies
    unknown = sorted(set(strategies) - set(known_strategies()))
    if unknown:
        raise McapError(f"params.yaml: 'strategies' lists unknown {unknown}; known: {', '.join(known_strategies())}")
    train = read_split(Path("data/processed") / task, "train")
    report_root = REPORTS / task
    with atomic_dir(PRUNED / task) as models, atomic_dir(report_root) as reports:
        for strategy in strategies:
            learned = isinstance(get_strategy(strategy), LearnedStrategy)
            for ratio in params.prune.ratios:
                report_dir = reports / model_name(strategy, ratio)
                scores = learned_scores_by_seed(params, strategy, task, ratio, report_dir) if learned else {}
                for seed in pruning_seeds(strategy, params.prune.seeds):
                    model, tokenizer = load_pretrained(params.model.name_or_path, seed)
                    context = PruneContext.of(params, model, tokenizer, task, train, seed, ratio, scores.get(str(seed)))
                    record = prune_model(strategy, context)
                    save_model(model, tokenizer, models / pruned_subdir(strategy, ratio, seed), record)
                    write_json(report_dir / f"seed-{seed}" / "heads.json", record)
                    plot_head_map(record, report_dir / f"seed-{seed}" / "heads.png")


if __name__ == "__main__":
    run_stage(main, "task")
