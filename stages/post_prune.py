"""Stage post_prune@<task>-<seed>-<sample> (Fisher importance: structured_gradient's criterion, Kwon et al.) or
post_prune_learned@<task>-<strategy>-<seed>-<sample> (post_prune.learned: at each budget, the scores of the structured
meta-controller trained at it, from meta_controller_budgets): structured pruning of the fine-tuned unpruned model (the
grid's ``none`` at the fine-tuning seed and the first of prune.ratios: ``none`` is the same model at every ratio) to
each MAC budget, no retraining, its Fisher and reconstruction sentences drawn by the pruning seed ``sample``; at the
budgets of post_prune.recovery_mac_ratios, also retrained by each of post_prune.recoveries (distillation,
cross-entropy)."""

from pathlib import Path

from mcap.cli import run_stage
from mcap.grid import finetuned_dir
from mcap.modeling import load_model
from mcap.outputs import atomic_dir, write_json
from mcap.post_prune import prune_after_finetuning
from mcap.splits import read_split
from mcap.structured import read_budget_scores

SPLITS = ("train", "validation", "test")
FISHER = "structured_gradient"  # Kwon et al.'s Fisher importance, the criterion structured_gradient prunes with


def main(params, args):
    task, seed, sample = args.task, int(args.seed), int(args.sample)
    task_dir = Path("data/processed") / task
    if args.strategy == FISHER:
        scores, name = None, task
    else:
        scores, name = read_budget_scores(args.strategy, task, params.post_prune.mac_ratios), f"{task}-{args.strategy}"
    run = Path(name) / f"seed-{seed}" / f"sample-{sample}"
    model, tokenizer, _pruning = load_model(finetuned_dir(task, "none", params.prune.ratios[0], seed,
                                                          params.prune.seeds[0]))
    with atomic_dir(Path("models/post_pruned") / run) as staging:
        metrics = prune_after_finetuning(model, tokenizer, *(read_split(task_dir, split) for split in SPLITS),
                                         params.post_prune, params.evaluate.threads, params.int8,
                                         params.train.max_seq_len, staging, scores, training=params.train, seed=seed,
                                         sample_seed=sample)
    write_json(Path("reports/post_prune") / f"{run}.json", metrics)


if __name__ == "__main__":
    run_stage(main, "task", "seed", "sample", "strategy")
