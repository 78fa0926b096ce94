"""Stage post_prune@<task>-<seed> (Fisher importance: structured_gradient's criterion, Kwon et al.) or
post_prune_mcap@<task>-<strategy>-<seed> (post_prune.learned: a structured meta-controller's δ): structured pruning
of the fine-tuned unpruned model to each MAC budget, no retraining."""

from pathlib import Path

import torch

from mcap.cli import run_stage
from mcap.errors import McapError
from mcap.modeling import load_model
from mcap.outputs import atomic_dir, write_json
from mcap.post_prune import prune_after_finetuning
from mcap.splits import read_split
from mcap.strategies.base import learned_scores

FISHER = "structured_gradient"  # Kwon et al.'s Fisher importance, the criterion structured_gradient prunes with


def structured_scores(strategy: str, task: str, seed: int) -> dict:
    """``task``'s heads and neuron-group scores from ``strategy``'s controller of seed ``seed``."""
    scores = learned_scores(strategy, task, seed)
    if not (isinstance(scores, dict) and {"heads", "neuron_groups"} <= set(scores)):
        raise McapError(f"params.yaml: 'post_prune.learned' lists {strategy!r}, whose controller scores heads only; it "
                        "takes structured strategies that score heads and FFN neuron groups (structured_mcap)")
    return scores


def main(params, args):
    torch.set_num_threads(params.evaluate.threads)
    run, task_dir = f"seed-{args.seed}", Path("data/processed") / args.task
    if args.strategy == FISHER:
        scores, name, outputs = None, args.task, ("models/post_pruned", "reports/post_prune")
    else:
        scores = structured_scores(args.strategy, args.task, params.seed)
        name, outputs = f"{args.task}-{args.strategy}", ("models/post_pruned_mcap", "reports/post_prune_mcap")
    model, tokenizer, _pruning = load_model(Path("models/finetuned") / f"{args.task}-none" / run)
    with atomic_dir(Path(outputs[0]) / name / run) as staging:
        metrics = prune_after_finetuning(model, tokenizer, read_split(task_dir, "train"), read_split(task_dir, "test"),
                                         params.post_prune, params.evaluate, params.train.max_seq_len, staging, scores)
    write_json(Path(outputs[1]) / name / f"{run}.json", metrics)


if __name__ == "__main__":
    run_stage(main, "task", "seed", "strategy")
