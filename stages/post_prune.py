"""Stage post_prune@<task>-<seed>: structured pruning of the fine-tuned unpruned model to each MAC budget, no retraining."""

from pathlib import Path

import torch

from mcap.cli import run_stage
from mcap.modeling import load_model
from mcap.outputs import atomic_dir, write_json
from mcap.post_prune import prune_after_finetuning
from mcap.splits import read_split


def main(params, args):
    torch.set_num_threads(params.evaluate.threads)
    run, task_dir = f"seed-{args.seed}", Path("data/processed") / args.task
    model, tokenizer, _pruning = load_model(Path("models/finetuned") / f"{args.task}-none" / run)
    with atomic_dir(Path("models/post_pruned") / args.task / run) as staging:
        metrics = prune_after_finetuning(model, tokenizer, read_split(task_dir, "train"), read_split(task_dir, "test"),
                                         params.post_prune, params.evaluate, params.train.max_seq_len, staging)
    write_json(Path("reports/post_prune") / args.task / f"{run}.json", metrics)


if __name__ == "__main__":
    run_stage(main, "task", "seed")
